//! A bounty's source tree as one canonical blob: the baseline agents start from, and each
//! leader's tree after an accepted diff. Validators unpack it into a scratch directory; the
//! coordinator applies the accepted diff to it and publishes the result as the next round's
//! baseline, which any validator recomputes.
//!
//! Encoding: JSON `{"v":1,"files":{path: text}}` with the paths in byte order (a `BTreeMap`),
//! padded with spaces to exactly [`TREE_BLOB_BYTES`], so one tree has exactly one encoding and
//! one BLAKE3 id, and every tree blob has the size a fetcher announces (as a checkpoint's size
//! follows from its model). Decoding checks the size before parsing and re-encodes to refuse
//! any other spelling.
//!
//! Spec: specs/L2T-13-bounties.md#the-network

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Version of the tree encoding.
pub const TREE_VERSION: u32 = 1;
/// Size of every tree blob, in bytes (the JSON, then spaces).
pub const TREE_BLOB_BYTES: usize = 64 * 1024;
/// Most files in a tree.
pub const MAX_TREE_FILES: usize = 256;
/// Longest path in a tree.
pub const MAX_PATH_LEN: usize = 256;

/// Why a tree blob was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TreeError {
    /// A blob of another size than [`TREE_BLOB_BYTES`], or files that do not fit in it.
    #[error("tree blob is {0} bytes, not {TREE_BLOB_BYTES}")]
    Size(usize),
    /// Over [`MAX_TREE_FILES`].
    #[error("tree has {0} files, over the cap")]
    TooManyFiles(usize),
    /// Not the JSON of a tree.
    #[error("tree does not decode: {0}")]
    Decode(String),
    /// Another version.
    #[error("unsupported tree version {0}")]
    Version(u32),
    /// A path that is empty, absolute, has an empty, `.` or `..` component, or is too long.
    #[error("tree path {0:?} is not a plain relative path")]
    BadPath(String),
    /// Decodes, but is not the canonical encoding.
    #[error("tree is not canonically encoded")]
    NotCanonical,
}

/// A source tree: relative path → UTF-8 text.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BountyTree {
    /// Version ([`TREE_VERSION`]).
    pub v: u32,
    /// Files by relative path.
    pub files: BTreeMap<String, String>,
}

/// Whether `p` is a plain relative path (`a/b.txt`).
pub fn plain_path(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= MAX_PATH_LEN
        && !p.starts_with('/')
        && !p.contains('\\')
        && !p.contains('\0')
        && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

impl BountyTree {
    /// A tree of `files`, checked.
    pub fn new(files: BTreeMap<String, String>) -> Result<Self, TreeError> {
        let t = Self {
            v: TREE_VERSION,
            files,
        };
        t.check()?;
        let len = t.json().len();
        if len > TREE_BLOB_BYTES {
            return Err(TreeError::Size(len));
        }
        Ok(t)
    }

    fn check(&self) -> Result<(), TreeError> {
        if self.v != TREE_VERSION {
            return Err(TreeError::Version(self.v));
        }
        if self.files.len() > MAX_TREE_FILES {
            return Err(TreeError::TooManyFiles(self.files.len()));
        }
        if let Some(p) = self.files.keys().find(|p| !plain_path(p)) {
            return Err(TreeError::BadPath(p.clone()));
        }
        Ok(())
    }

    fn json(&self) -> Vec<u8> {
        // A map of strings always serialises.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The canonical encoding (a tree made by [`BountyTree::new`] or decoded always fits).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = self.json();
        b.resize(TREE_BLOB_BYTES.max(b.len()), b' ');
        b
    }

    /// Decode a tree blob: size, JSON, version, paths, canonical form.
    pub fn decode(b: &[u8]) -> Result<Self, TreeError> {
        if b.len() != TREE_BLOB_BYTES {
            return Err(TreeError::Size(b.len()));
        }
        let t: Self = serde_json::from_slice(b).map_err(|e| TreeError::Decode(e.to_string()))?;
        t.check()?;
        if t.encode() != b {
            return Err(TreeError::NotCanonical);
        }
        Ok(t)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn one_encoding_per_tree_and_bad_trees_are_typed_errors() {
        let t = BountyTree::new(BTreeMap::from([
            ("run.sh".into(), "sh\n".into()),
            ("a/train.toml".into(), "steps = 1\n".into()),
        ]))
        .unwrap();
        let b = t.encode();
        assert_eq!(BountyTree::decode(&b).unwrap(), t);
        assert_eq!(b.len(), TREE_BLOB_BYTES);
        let padded = |s: &str| {
            let mut v = s.as_bytes().to_vec();
            v.resize(TREE_BLOB_BYTES, b' ');
            v
        };
        let json = String::from_utf8(t.json()).unwrap();
        assert_eq!(
            BountyTree::decode(&padded(&json.replace(':', ": "))),
            Err(TreeError::NotCanonical)
        );
        for bad in ["/etc/passwd", "../x", "a//b", "./a", ""] {
            let json = format!(r#"{{"v":1,"files":{{"{bad}":"x"}}}}"#);
            assert_eq!(
                BountyTree::decode(&padded(&json)),
                Err(TreeError::BadPath(bad.into()))
            );
        }
        assert!(matches!(
            BountyTree::decode(&padded(r#"{"v":2,"files":{}}"#)),
            Err(TreeError::Version(2))
        ));
        assert!(matches!(
            BountyTree::decode(&padded(r#"{"v":1,"files":{},"x":1}"#)),
            Err(TreeError::Decode(_))
        ));
        assert_eq!(
            BountyTree::decode(&json.into_bytes()),
            Err(TreeError::Size(62))
        );
        let huge = BTreeMap::from([("a".to_owned(), "x".repeat(TREE_BLOB_BYTES))]);
        assert!(matches!(BountyTree::new(huge), Err(TreeError::Size(_))));
    }
}
