//! Bit packing: 12-bit indices three bytes to a pair, 2-bit codes four to a byte.
//!
//! Spec: specs/L2T-06-sparseloco.md#bit-layout
//!
//! The index layout is Templar's `pack_12bit_indices`, applied to the tensor's whole index stream:
//!
//! ```text
//! b0 = i1 & 0xFF
//! b1 = ((i1 >> 8) & 0x0F) | ((i2 & 0x0F) << 4)
//! b2 = (i2 >> 4) & 0xFF
//! ```
//!
//! An odd-length stream (possible only with one-element chunks, which Templar cannot encode) is
//! padded with a zero index. Codes are packed least-significant bits first:
//! `byte = q0 | q1 << 2 | q2 << 4 | q3 << 6`, the last byte padded with zero bits.
//! Decoders reject non-zero padding, so every value has exactly one encoding.

use thiserror::Error;

/// Largest value a 12-bit index can hold.
pub const MAX_INDEX: u16 = 0x0FFF;

/// A packed stream is malformed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PackError {
    /// The byte count does not match the entry count.
    #[error("packed stream has {got} bytes, expected {expected}")]
    WrongLength {
        /// Bytes expected for the entry count.
        expected: usize,
        /// Bytes present.
        got: usize,
    },
    /// Padding bits or a padding index are not zero.
    #[error("non-zero padding in a packed stream")]
    NonZeroPadding,
}

/// Bytes needed for `n` packed 12-bit indices.
pub const fn packed_index_len(n: usize) -> usize {
    n.div_ceil(2) * 3
}

/// Bytes needed for `n` packed 2-bit codes.
pub const fn packed_code_len(n: usize) -> usize {
    n.div_ceil(4)
}

/// Packs indices (each ≤ [`MAX_INDEX`]) into 12-bit pairs, appending to `out`.
pub fn pack_indices(indices: &[u16], out: &mut Vec<u8>) {
    out.reserve(packed_index_len(indices.len()));
    let mut pairs = indices.chunks_exact(2);
    for p in &mut pairs {
        push_pair(out, p[0], p[1]);
    }
    if let [last] = pairs.remainder() {
        push_pair(out, *last, 0);
    }
}

#[inline]
fn push_pair(out: &mut Vec<u8>, i1: u16, i2: u16) {
    debug_assert!(i1 <= MAX_INDEX && i2 <= MAX_INDEX);
    out.extend_from_slice(&[
        (i1 & 0xFF) as u8,
        (((i1 >> 8) & 0x0F) | ((i2 & 0x0F) << 4)) as u8,
        ((i2 >> 4) & 0xFF) as u8,
    ]);
}

/// Unpacks `n` 12-bit indices from `packed` into `out` (cleared first).
pub fn unpack_indices(packed: &[u8], n: usize, out: &mut Vec<u16>) -> Result<(), PackError> {
    let expected = packed_index_len(n);
    if packed.len() != expected {
        return Err(PackError::WrongLength {
            expected,
            got: packed.len(),
        });
    }
    out.clear();
    out.reserve(n + 1);
    for t in packed.chunks_exact(3) {
        let (b0, b1, b2) = (u16::from(t[0]), u16::from(t[1]), u16::from(t[2]));
        out.push(b0 | ((b1 & 0x0F) << 8));
        out.push(((b1 >> 4) & 0x0F) | (b2 << 4));
    }
    if out.len() > n {
        if out[n] != 0 {
            return Err(PackError::NonZeroPadding);
        }
        out.truncate(n);
    }
    Ok(())
}

/// Packs 2-bit codes (each 0..=3) four to a byte, appending to `out`.
pub fn pack_codes(codes: &[u8], out: &mut Vec<u8>) {
    out.reserve(packed_code_len(codes.len()));
    let mut quads = codes.chunks_exact(4);
    for q in &mut quads {
        out.push((q[0] & 3) | (q[1] & 3) << 2 | (q[2] & 3) << 4 | (q[3] & 3) << 6);
    }
    let rest = quads.remainder();
    if !rest.is_empty() {
        let mut b = 0u8;
        for (i, q) in rest.iter().enumerate() {
            b |= (q & 3) << (2 * i);
        }
        out.push(b);
    }
}

/// Unpacks `n` 2-bit codes from `packed` into `out` (cleared first).
pub fn unpack_codes(packed: &[u8], n: usize, out: &mut Vec<u8>) -> Result<(), PackError> {
    let expected = packed_code_len(n);
    if packed.len() != expected {
        return Err(PackError::WrongLength {
            expected,
            got: packed.len(),
        });
    }
    out.clear();
    out.reserve(expected * 4);
    for &b in packed {
        out.extend_from_slice(&[b & 3, (b >> 2) & 3, (b >> 4) & 3, b >> 6]);
    }
    if out[n..].iter().any(|&q| q != 0) {
        return Err(PackError::NonZeroPadding);
    }
    out.truncate(n);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templar_index_layout() {
        // (0x123, 0xABC) -> b0 = 0x23, b1 = 0x01 | 0xC0, b2 = 0xAB
        let mut out = Vec::new();
        pack_indices(&[0x123, 0xABC], &mut out);
        assert_eq!(out, [0x23, 0xC1, 0xAB]);
        let mut back = Vec::new();
        unpack_indices(&out, 2, &mut back).unwrap();
        assert_eq!(back, [0x123, 0xABC]);
    }

    #[test]
    fn odd_index_stream_is_padded_and_checked() {
        let mut out = Vec::new();
        pack_indices(&[4095, 1, 7], &mut out);
        assert_eq!(out.len(), 6);
        let mut back = Vec::new();
        unpack_indices(&out, 3, &mut back).unwrap();
        assert_eq!(back, [4095, 1, 7]);
        out[5] = 0x10;
        assert_eq!(
            unpack_indices(&out, 3, &mut back),
            Err(PackError::NonZeroPadding)
        );
    }

    #[test]
    fn codes_lsb_first() {
        let mut out = Vec::new();
        pack_codes(&[1, 2, 3, 0, 3], &mut out);
        assert_eq!(out, [0b00_11_10_01, 0b11]);
        let mut back = Vec::new();
        unpack_codes(&out, 5, &mut back).unwrap();
        assert_eq!(back, [1, 2, 3, 0, 3]);
        assert_eq!(
            unpack_codes(&[0b0111], 1, &mut back),
            Err(PackError::NonZeroPadding)
        );
        assert!(matches!(
            unpack_codes(&[0], 5, &mut back),
            Err(PackError::WrongLength { .. })
        ));
    }
}
