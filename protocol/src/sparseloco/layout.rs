//! How a tensor is cut into chunks (Templar's `ChunkingTransformer`, without the DCT).
//!
//! Spec: specs/L2T-06-sparseloco.md#chunking

use thiserror::Error;

use super::CodecParams;

/// Largest tensor the codec accepts, in elements (2^34 ≈ 17 G values, 64 GiB of fp32).
pub const MAX_TENSOR_ELEMENTS: u64 = 1 << 34;
/// Largest rank the codec accepts.
pub const MAX_RANK: usize = 8;

/// Why a shape or parameter set cannot be chunked.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum LayoutError {
    /// The tensor has no dimensions (scalars are sent as shape `[1]`).
    #[error("a tensor needs at least one dimension")]
    EmptyShape,
    /// The tensor has more dimensions than [`MAX_RANK`].
    #[error("rank {0} exceeds the maximum of {MAX_RANK}")]
    RankTooLarge(usize),
    /// A dimension is zero.
    #[error("dimension {0} is zero")]
    ZeroDimension(usize),
    /// The element count exceeds [`MAX_TENSOR_ELEMENTS`] (or overflows).
    #[error("tensor has too many elements (cap {MAX_TENSOR_ELEMENTS})")]
    TooManyElements,
    /// The codec parameters are out of range.
    #[error("bad codec parameters: {0}")]
    BadParams(&'static str),
}

/// The chunk grid of one tensor.
///
/// The tensor is viewed as a matrix of `rows × cols` (rank 1: `1 × n`; rank ≥ 3: all leading
/// dimensions folded into rows). Chunks are `h × w` blocks, `h` the largest divisor of `rows` that
/// is ≤ `target_chunk` and `w` likewise for `cols`, ordered row-major over the grid; inside a chunk
/// elements are numbered row-major (`i_h · w + i_w`), which is Templar's `"y x (h w)"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLayout {
    /// Rows of the matrix view.
    pub rows: usize,
    /// Columns of the matrix view.
    pub cols: usize,
    /// Chunk height.
    pub h: usize,
    /// Chunk width.
    pub w: usize,
    /// Entries kept per chunk.
    pub k: usize,
}

impl ChunkLayout {
    /// Derives the layout of a tensor of `shape` under `params`.
    pub fn new(shape: &[u64], params: &CodecParams) -> Result<Self, LayoutError> {
        params.validate()?;
        if shape.is_empty() {
            return Err(LayoutError::EmptyShape);
        }
        if shape.len() > MAX_RANK {
            return Err(LayoutError::RankTooLarge(shape.len()));
        }
        let mut total: u64 = 1;
        for (i, &d) in shape.iter().enumerate() {
            if d == 0 {
                return Err(LayoutError::ZeroDimension(i));
            }
            total = total.checked_mul(d).ok_or(LayoutError::TooManyElements)?;
        }
        if total > MAX_TENSOR_ELEMENTS {
            return Err(LayoutError::TooManyElements);
        }
        let (rows, cols) = match shape {
            [n] => (1u64, *n),
            [a, b] => (*a, *b),
            [lead @ .., last] => (lead.iter().product(), *last),
            [] => return Err(LayoutError::EmptyShape),
        };
        let target = u64::from(params.target_chunk);
        // Templar treats 1-D tensors as `(x w) -> x w`: chunks of one row.
        let h = if shape.len() == 1 {
            1
        } else {
            smaller_split(rows, target)
        };
        let w = smaller_split(cols, target);
        let chunk_len = h * w;
        let k = clamp_topk(u64::from(params.topk), chunk_len);
        // All values fit in usize: total ≤ 2^34 and we only build for 64-bit targets in practice;
        // on 32-bit targets `try_from` reports the overflow instead of truncating.
        let to_usize = |v: u64| usize::try_from(v).map_err(|_| LayoutError::TooManyElements);
        Ok(Self {
            rows: to_usize(rows)?,
            cols: to_usize(cols)?,
            h: to_usize(h)?,
            w: to_usize(w)?,
            k: to_usize(k)?,
        })
    }

    /// Number of elements in the tensor.
    pub fn len(&self) -> usize {
        self.rows * self.cols
    }

    /// Whether the tensor is empty (never true for a valid layout).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Elements per chunk (`h · w`, at most 4096).
    pub fn chunk_len(&self) -> usize {
        self.h * self.w
    }

    /// Chunks along the rows.
    pub fn chunk_rows(&self) -> usize {
        self.rows / self.h
    }

    /// Chunks along the columns.
    pub fn chunk_cols(&self) -> usize {
        self.cols / self.w
    }

    /// Number of chunks.
    pub fn n_chunks(&self) -> usize {
        self.chunk_rows() * self.chunk_cols()
    }

    /// Number of (index, value) entries the tensor transmits.
    pub fn n_entries(&self) -> usize {
        self.n_chunks() * self.k
    }

    /// Dense position (row-major over the matrix view) of local index `j` in chunk `c`.
    #[inline]
    pub fn position(&self, c: usize, j: usize) -> usize {
        let (cy, cx) = (c / self.chunk_cols(), c % self.chunk_cols());
        let (ih, iw) = (j / self.w, j % self.w);
        (cy * self.h + ih) * self.cols + cx * self.w + iw
    }
}

/// Templar's `_clamp_topk`: `k = max(min(topk, chunk), 2)`, then rounded down to even.
///
/// Templar fails on a chunk of a single element (`torch.topk` with k = 2 > 1); we define k = 1 there,
/// the only extension to its rule (such tensors have a prime dimension > 64 and no other divisor).
pub fn clamp_topk(topk: u64, chunk_len: u64) -> u64 {
    if chunk_len == 1 {
        return 1;
    }
    let k = topk.min(chunk_len).max(2);
    k - (k % 2)
}

/// Templar's `_get_smaller_split`: the largest divisor of `n` that is ≤ `close_to`, or `n` itself
/// when `n < close_to`.
pub fn smaller_split(n: u64, close_to: u64) -> u64 {
    if n <= close_to {
        return n;
    }
    (1..=close_to).rev().find(|d| n % d == 0).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templar_split_rule() {
        assert_eq!(smaller_split(4096, 64), 64);
        assert_eq!(smaller_split(768, 64), 64);
        assert_eq!(smaller_split(100, 64), 50);
        assert_eq!(smaller_split(67, 64), 1);
        assert_eq!(smaller_split(3, 64), 3);
        assert_eq!(smaller_split(64, 64), 64);
        assert_eq!(smaller_split(96, 64), 48);
    }

    #[test]
    fn topk_clamp_rule() {
        assert_eq!(clamp_topk(64, 4096), 64);
        assert_eq!(clamp_topk(64, 64), 64);
        assert_eq!(clamp_topk(64, 3), 2);
        assert_eq!(clamp_topk(64, 2), 2);
        assert_eq!(clamp_topk(64, 1), 1);
        assert_eq!(clamp_topk(63, 4096), 62);
    }

    #[test]
    fn layouts() {
        let p = CodecParams::default();
        let l = ChunkLayout::new(&[128, 192], &p).unwrap();
        assert_eq!((l.h, l.w, l.k, l.n_chunks()), (64, 64, 64, 6));
        let l = ChunkLayout::new(&[768], &p).unwrap();
        assert_eq!((l.rows, l.h, l.w, l.k, l.n_chunks()), (1, 1, 64, 64, 12));
        let l = ChunkLayout::new(&[2, 3, 128], &p).unwrap();
        assert_eq!((l.rows, l.cols, l.h, l.w), (6, 128, 6, 64));
        assert_eq!(ChunkLayout::new(&[], &p), Err(LayoutError::EmptyShape));
        assert_eq!(
            ChunkLayout::new(&[4, 0], &p),
            Err(LayoutError::ZeroDimension(1))
        );
        assert_eq!(
            ChunkLayout::new(&[1 << 20, 1 << 20], &p),
            Err(LayoutError::TooManyElements)
        );
        // position(): chunk 1 of a 128×192 grid starts at column 64 of row 0.
        let l = ChunkLayout::new(&[128, 192], &p).unwrap();
        assert_eq!(l.position(1, 0), 64);
        assert_eq!(l.position(1, 65), 192 + 65);
        assert_eq!(l.position(3, 0), 64 * 192);
    }
}
