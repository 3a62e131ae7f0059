"""NumPy baseline for the SparseLoCo codec benchmark (protocol/benches/codec.rs).

A straightforward, vectorised NumPy port of the same algorithm (Templar's compress.py without
torch): 64x64 chunks, top-64 by |x| per chunk (argpartition), 2-bit quantisation with the 1.5-sigma
scale and the 4-entry lookup, 12-bit index packing and 4-per-byte code packing; decode scatters the
dequantised values back. Ties may be broken differently from the Rust codec (argpartition's order).

Usage: python3 numpy_codec.py DATA.f32 ROWS COLS COUNT encode|encode-loop|decode ITERS
Prints the seconds spent in ITERS runs of the whole codec over COUNT tensors of ROWS x COLS.
"""
import math
import sys
import time

import numpy as np

K, CH, BINS, RANGE = 64, 64, 4, 6


def chunked(x, rows, cols):
    h = w = CH
    return x.reshape(rows // h, h, cols // w, w).transpose(0, 2, 1, 3).reshape(-1, h * w)


def quantise_and_pack(chunks, idx):
    """Everything after selection: gather, 2-bit quantisation, 12-bit and 2-bit packing."""
    val = np.take_along_axis(chunks, idx, axis=1).ravel()
    n = val.size
    mu = np.float32(val.mean(dtype=np.float64))
    c = val - mu
    std = np.float32(math.sqrt(float(np.dot(c.astype(np.float64), c.astype(np.float64))))) / np.float32(math.sqrt(n - 1))
    scale = np.float32(RANGE) * std / np.float32(BINS)
    if scale == 0 or not np.isfinite(scale):
        scale = np.float32(1.0)
    q = np.clip(np.rint(c / scale + np.float32(BINS // 2)), 0, BINS - 1).astype(np.uint8)
    counts = np.bincount(q, minlength=BINS)
    sums = np.bincount(q, weights=c, minlength=BINS)
    lookup = np.where(counts > 0, sums / np.maximum(counts, 1), 0).astype(np.float32)
    i = idx.ravel().astype(np.uint16)
    i1, i2 = i[0::2], i[1::2]
    packed = np.empty(i1.size * 3, np.uint8)
    packed[0::3] = i1 & 0xFF
    packed[1::3] = ((i1 >> 8) & 0x0F) | ((i2 & 0x0F) << 4)
    packed[2::3] = (i2 >> 4) & 0xFF
    qq = q.reshape(-1, 4)
    codes = qq[:, 0] | (qq[:, 1] << 2) | (qq[:, 2] << 4) | (qq[:, 3] << 6)
    return packed, codes, mu, scale, lookup


def encode(x, rows, cols):
    """Vectorised: one argpartition over all chunks at once."""
    chunks = chunked(x, rows, cols)
    idx = np.argpartition(np.abs(chunks), -K, axis=1)[:, -K:]
    idx.sort(axis=1)
    return quantise_and_pack(chunks, idx)


def encode_loop(x, rows, cols):
    """The per-chunk variant (a Python loop calling argpartition on each 4096-value chunk), the
    shape of the NumPy port measured in shared/reference/upstream-apis.md section 10."""
    chunks = chunked(x, rows, cols)
    idx = np.empty((chunks.shape[0], K), np.int64)
    for i, ch in enumerate(chunks):
        top = np.argpartition(np.abs(ch), -K)[-K:]
        top.sort()
        idx[i] = top
    return quantise_and_pack(chunks, idx)


def decode(enc, rows, cols):
    packed, codes, mu, _scale, lookup = enc
    b0, b1, b2 = (packed[0::3].astype(np.int64), packed[1::3].astype(np.int64), packed[2::3].astype(np.int64))
    idx = np.empty(b0.size * 2, np.int64)
    idx[0::2] = b0 | ((b1 & 0x0F) << 8)
    idx[1::2] = ((b1 >> 4) & 0x0F) | (b2 << 4)
    q = np.stack([codes & 3, (codes >> 2) & 3, (codes >> 4) & 3, codes >> 6], axis=1).ravel()
    vals = lookup[q] + mu
    h = w = CH
    dense = np.zeros(((rows // h) * (cols // w), h * w), np.float32)
    np.put_along_axis(dense, idx.reshape(dense.shape[0], K), vals.reshape(dense.shape[0], K), axis=1)
    return dense.reshape(rows // h, cols // w, h, w).transpose(0, 2, 1, 3).reshape(rows, cols)


def main():
    path, rows, cols, count, mode, iters = sys.argv[1], *map(int, sys.argv[2:5]), sys.argv[5], int(sys.argv[6])
    data = np.fromfile(path, dtype=np.float32)
    tensors = [data[i * rows * cols:(i + 1) * rows * cols] for i in range(count)]
    encoded = [encode(t, rows, cols) for t in tensors] if mode == "decode" else None
    start = time.perf_counter()
    for _ in range(iters):
        if mode == "encode":
            for t in tensors:
                encode(t, rows, cols)
        elif mode == "encode-loop":
            for t in tensors:
                encode_loop(t, rows, cols)
        else:
            for e in encoded:
                decode(e, rows, cols)
    print(f"{time.perf_counter() - start:.9f}")


if __name__ == "__main__":
    main()
