//! The node's blob store: an iroh-blobs `FsStore` in `<data_dir>/blobs`, plus the persisted
//! [`BlobIndex`] that says which rounds each blob belongs to and who may fetch it.
//!
//! Crash safety: an index entry is written (atomically, tmp + rename) *before* the bytes are
//! added, so every blob in the store is known to the index; an entry whose bytes never arrived
//! is harmless (requests for it find nothing). Garbage collection removes index entries first,
//! then the tags, and lets the store's GC pass delete the bytes.

use std::{
    collections::{BTreeSet, HashSet},
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::Duration,
};

use iroh_blobs::{
    api::{blobs::BlobStatus, Store, TempTag},
    store::{
        fs::{options::Options, FsStore},
        GcConfig, ProtectCb, ProtectOutcome,
    },
    Hash, HashAndFormat,
};
use l402_protocol::blobmeta::{
    BlobEntry, BlobId, BlobIndex, PeerKey, Placement, RoundKey, ServeDecision,
};
use tokio::sync::{watch, Mutex};
use tracing::{debug, info};

use super::{
    config::{INDEX_FILE, TAG_PREFIX},
    BlobError,
};

/// Shared, lock-protected blob index. Read by the access-control task on every request.
pub(crate) type SharedIndex = Arc<RwLock<BlobIndex>>;

/// What a garbage-collection call removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcReport {
    /// Hashes whose bytes were deleted, in order.
    pub removed: Vec<BlobId>,
}

/// The node's blob store. Clones share the same store and index.
#[derive(Clone, Debug)]
pub struct LocalStore {
    fs: Arc<FsStore>,
    index: SharedIndex,
    index_path: PathBuf,
    /// Serialises index writes so the file on disk is always the latest snapshot.
    persist: Arc<Mutex<()>>,
    /// Counts store GC passes (bumped by the GC protect callback at the start of each pass).
    gc_passes: watch::Receiver<u64>,
}

impl LocalStore {
    /// Opens (or creates) the store in `dir`, loading the persisted index if there is one.
    pub async fn open(dir: &Path, gc_interval: Duration) -> Result<Self, BlobError> {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| BlobError::io(format!("create {}", dir.display()), e))?;
        let index_path = dir.join(INDEX_FILE);
        let index = match tokio::fs::read(&index_path).await {
            Ok(bytes) => BlobIndex::decode(&bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BlobIndex::new(),
            Err(e) => return Err(BlobError::io(format!("read {}", index_path.display()), e)),
        };
        let index: SharedIndex = Arc::new(RwLock::new(index));
        let (gc_tx, gc_passes) = watch::channel(0u64);
        let protect_index = index.clone();
        // The index is the source of truth: everything in it is protected from the store's GC,
        // in addition to tags (ours) and temp tags (fetches in progress).
        let protect: ProtectCb = Arc::new(move |live: &mut HashSet<Hash>| {
            let outcome = match protect_index.read() {
                Ok(index) => {
                    live.extend(index.iter().map(|(h, _)| Hash::from_bytes(h.0)));
                    ProtectOutcome::Continue
                }
                Err(_) => ProtectOutcome::Abort,
            };
            gc_tx.send_modify(|n| *n += 1);
            Box::pin(std::future::ready(outcome))
        });
        let store_dir = dir.join("store");
        let mut options = Options::new(&store_dir);
        options.gc = Some(GcConfig {
            interval: gc_interval,
            add_protected: Some(protect),
        });
        let fs = FsStore::load_with_opts(store_dir.join("blobs.db"), options)
            .await
            .map_err(BlobError::store)?;
        Ok(Self {
            fs: Arc::new(fs),
            index,
            index_path,
            persist: Arc::new(Mutex::new(())),
            gc_passes,
        })
    }

    /// The underlying iroh-blobs store API.
    pub fn api(&self) -> &Store {
        &self.fs
    }

    pub(crate) fn shared_index(&self) -> SharedIndex {
        self.index.clone()
    }

    /// Adds `bytes` as a blob with `placement`; returns its BLAKE3 hash.
    pub async fn add(&self, bytes: Vec<u8>, placement: &Placement) -> Result<BlobId, BlobError> {
        let hash = BlobId::of(&bytes);
        let size = bytes.len() as u64;
        self.record(hash, size, placement).await?;
        let stored = self
            .fs
            .add_bytes(bytes)
            .with_named_tag(tag_name(&hash))
            .await
            .map_err(BlobError::store)?;
        debug_assert_eq!(stored.hash.as_bytes(), &hash.0);
        debug!(blob = %hash.to_hex(), size, "blob added");
        Ok(hash)
    }

    /// Records a blob in the index (and persists the index) without touching the bytes.
    pub(crate) async fn record(
        &self,
        hash: BlobId,
        size: u64,
        placement: &Placement,
    ) -> Result<(), BlobError> {
        self.update_index(|index| index.insert(hash, size, placement).map_err(Into::into))
            .await
    }

    /// Tags a fetched blob so the store's GC keeps it.
    pub(crate) async fn tag(&self, hash: &BlobId) -> Result<(), BlobError> {
        self.fs
            .tags()
            .set(tag_name(hash), HashAndFormat::raw(Hash::from_bytes(hash.0)))
            .await
            .map_err(BlobError::store)
    }

    /// A temp tag that protects a partial blob from GC while it is being fetched.
    pub(crate) async fn protect(&self, hash: &BlobId) -> Result<TempTag, BlobError> {
        self.fs
            .tags()
            .temp_tag(HashAndFormat::raw(Hash::from_bytes(hash.0)))
            .await
            .map_err(BlobError::store)
    }

    /// How much of `hash` the store holds.
    pub async fn status(&self, hash: &BlobId) -> Result<BlobStatus, BlobError> {
        self.fs
            .blobs()
            .status(Hash::from_bytes(hash.0))
            .await
            .map_err(BlobError::store)
    }

    /// True if the store holds all of `hash`.
    pub async fn is_complete(&self, hash: &BlobId) -> Result<bool, BlobError> {
        Ok(matches!(
            self.status(hash).await?,
            BlobStatus::Complete { .. }
        ))
    }

    /// The bytes of a complete blob. For big blobs prefer [`Self::export`].
    pub async fn read(&self, hash: &BlobId) -> Result<Vec<u8>, BlobError> {
        if !self.is_complete(hash).await? {
            return Err(BlobError::NotHeld {
                hash: hash.to_hex(),
            });
        }
        let bytes = self
            .fs
            .blobs()
            .get_bytes(Hash::from_bytes(hash.0))
            .await
            .map_err(BlobError::store)?;
        Ok(bytes.to_vec())
    }

    /// Copies a complete blob to `target` (an absolute path).
    pub async fn export(&self, hash: &BlobId, target: &Path) -> Result<u64, BlobError> {
        if !self.is_complete(hash).await? {
            return Err(BlobError::NotHeld {
                hash: hash.to_hex(),
            });
        }
        self.fs
            .blobs()
            .export(Hash::from_bytes(hash.0), target)
            .finish()
            .await
            .map_err(BlobError::store)
    }

    /// The index entry of `hash`.
    pub fn entry(&self, hash: &BlobId) -> Option<BlobEntry> {
        self.index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(hash)
            .cloned()
    }

    /// Whether this node would serve `hash` to `peer`.
    pub fn serve_decision(&self, hash: &BlobId, peer: &PeerKey) -> ServeDecision {
        self.index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .serve_decision(hash, peer)
    }

    /// Lets `peers` fetch the restricted blobs of `round`.
    pub async fn allow(
        &self,
        round: &RoundKey,
        peers: &BTreeSet<PeerKey>,
    ) -> Result<usize, BlobError> {
        self.update_index(|index| index.allow(round, peers).map_err(Into::into))
            .await
    }

    /// Makes every blob of `round` public. Returns the hashes released.
    pub async fn release_round(&self, round: &RoundKey) -> Result<Vec<BlobId>, BlobError> {
        let released = self
            .update_index(|index| Ok(index.release_round(round)))
            .await?;
        info!(run = %round.run, round = round.round, released = released.len(), "round released");
        Ok(released)
    }

    /// Deletes the blobs of `run`'s rounds before `keep_from_round` (unless another round or a
    /// pin keeps them), and waits until the store's GC pass has removed their bytes.
    pub async fn collect_rounds_before(
        &self,
        run: &str,
        keep_from_round: u64,
    ) -> Result<GcReport, BlobError> {
        let removed = self
            .update_index(|index| Ok(index.collect_rounds_before(run, keep_from_round)))
            .await?;
        for hash in &removed {
            self.fs
                .tags()
                .delete(tag_name(hash))
                .await
                .map_err(BlobError::store)?;
        }
        if !removed.is_empty() {
            self.wait_gc_pass().await?;
        }
        info!(
            run,
            keep_from_round,
            removed = removed.len(),
            "old rounds collected"
        );
        Ok(GcReport { removed })
    }

    /// Waits until a complete store GC pass has started and finished after this call.
    async fn wait_gc_pass(&self) -> Result<(), BlobError> {
        let mut passes = self.gc_passes.clone();
        let start = *passes.borrow_and_update();
        // The protect callback runs at the start of each pass: the pass after next began
        // after this call and the next one has finished.
        passes
            .wait_for(|n| *n >= start + 2)
            .await
            .map_err(|_| BlobError::Shutdown)?;
        Ok(())
    }

    async fn update_index<T>(
        &self,
        change: impl FnOnce(&mut BlobIndex) -> Result<T, BlobError>,
    ) -> Result<T, BlobError> {
        let _guard = self.persist.lock().await;
        let (out, bytes) = {
            let mut index = self.index.write().unwrap_or_else(|p| p.into_inner());
            let mut next = index.clone();
            let out = change(&mut next)?;
            let bytes = next.encode();
            *index = next;
            (out, bytes)
        };
        write_atomically(&self.index_path, &bytes).await?;
        Ok(out)
    }

    /// Flushes and stops the store.
    pub async fn shutdown(&self) -> Result<(), BlobError> {
        self.fs.shutdown().await.map_err(BlobError::store)
    }
}

fn tag_name(hash: &BlobId) -> String {
    format!("{TAG_PREFIX}{}", hash.to_hex())
}

async fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), BlobError> {
    let tmp = path.with_extension("tmp");
    let bytes = bytes.to_vec();
    let (tmp2, path2) = (tmp.clone(), path.to_path_buf());
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        use std::io::Write;
        let mut file = std::fs::File::create(&tmp2)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp2, &path2)
    })
    .await
    .map_err(|e| BlobError::io("index writer task", std::io::Error::other(e)))?
    .map_err(|e| BlobError::io(format!("write {}", tmp.display()), e))
}

/// Converts a 32-byte hash into iroh-blobs' type.
pub(crate) fn iroh_hash(hash: &BlobId) -> Hash {
    Hash::from_bytes(hash.0)
}
