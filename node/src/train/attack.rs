//! Byzantine training outputs: what a misbehaving peer submits instead of its honest update.
//! The demo and the simulator's real mode give a peer one of these behaviours; an honest node
//! never calls them. They change only the peer's own training output: the protocol machines,
//! the validators' checks and the escrow run unchanged.
//!
//! Spec: specs/L2T-12-sim.md#attacks (test-matrix A3–A5)
//!
//! - [`sign_flip`]: the negated honest update (A3).
//! - [`add_noise`]: copycat plus noise, a leaked honest update perturbed so its hash differs.
//! - [`alie`]: "A Little Is Enough" (Baruch et al., NeurIPS 2019): colluders submit the
//!   per-coordinate mean − z·σ of the honest updates they can see, with z from [`alie_z`].
//! - A stale-checkpoint trainer needs no code here: it trains on round r − 2's checkpoint
//!   (`PeerTrainer::round_blob_timed` with `RoundOutput::Stale`).

use l402_protocol::sparseloco;
use l402_protocol::sparseloco::CodecParams;
use l402_protocol::training::ModelSpec;
use l402_protocol::wire::PseudoGradient;

use super::codec::payload_bytes;
use super::rng::SeedRng;
use super::update::DenseUpdate;
use super::TrainError;

/// Negate every coordinate (the sign-flip poisoner).
pub fn sign_flip(delta: &mut DenseUpdate) {
    for v in delta.tensors.values_mut().flatten() {
        *v = -*v;
    }
}

/// Decode a blob this node holds (a leaked submission) to its dense update, with the payload
/// capped at the model's exact size as a validator's decoder caps it.
pub fn decode_blob(
    blob: &[u8],
    spec: &ModelSpec,
    params: &CodecParams,
) -> Result<DenseUpdate, TrainError> {
    let cap = payload_bytes(spec, params)?;
    let g = PseudoGradient::from_blob_with_limit(blob, cap)
        .map_err(|e| TrainError::Codec(e.to_string()))?;
    Ok(DenseUpdate {
        tensors: g
            .tensors
            .iter()
            .map(|t| (t.name.clone(), sparseloco::decode(&t.tensor)))
            .collect(),
    })
}

/// Copycat plus noise: add Gaussian noise of standard deviation `sigma` × the tensor's RMS to
/// every coordinate the copy carries (its non-zero ones, so the re-encoded copy selects the same
/// coordinates and stays a near-copy), from the seeded stream of `seed`.
pub fn add_noise(delta: &mut DenseUpdate, sigma: f64, seed: [u8; 32]) {
    for (i, v) in delta.tensors.values_mut().enumerate() {
        let nz: Vec<f64> = v
            .iter()
            .filter(|x| **x != 0.0)
            .map(|x| f64::from(*x))
            .collect();
        if nz.is_empty() {
            continue;
        }
        let rms = (nz.iter().map(|x| x * x).sum::<f64>() / nz.len() as f64).sqrt();
        let mut rng = SeedRng::sub(&seed, b"copycat-noise", i as u64);
        for x in v.iter_mut().filter(|x| **x != 0.0) {
            *x += (rng.normal() * sigma * rms) as f32;
        }
    }
}

/// ALIE: the per-coordinate mean − `z`·σ of `honest` (population standard deviation). Errors
/// if `honest` is empty or the updates' tensors differ.
pub fn alie(honest: &[DenseUpdate], z: f64) -> Result<DenseUpdate, TrainError> {
    let first = honest
        .first()
        .ok_or_else(|| TrainError::Codec("ALIE needs at least one honest update".into()))?;
    let n = honest.len() as f64;
    let mut out = DenseUpdate {
        tensors: Default::default(),
    };
    for (name, v0) in &first.tensors {
        let cols: Vec<&Vec<f32>> = honest
            .iter()
            .map(|u| {
                u.tensors
                    .get(name)
                    .filter(|v| v.len() == v0.len())
                    .ok_or_else(|| TrainError::Codec(format!("honest updates differ at {name}")))
            })
            .collect::<Result<_, _>>()?;
        let t = (0..v0.len())
            .map(|j| {
                let mean = cols.iter().map(|c| f64::from(c[j])).sum::<f64>() / n;
                let var = cols
                    .iter()
                    .map(|c| (f64::from(c[j]) - mean).powi(2))
                    .sum::<f64>()
                    / n;
                (mean - z * var.sqrt()) as f32
            })
            .collect();
        out.tensors.insert(name.clone(), t);
    }
    Ok(out)
}

/// ALIE's z for `n` workers of which `m` are Byzantine (Baruch et al. §3): with
/// s = ⌊n/2 + 1⌋ − m the number of honest workers the attackers must sway,
/// z = Φ⁻¹((n − s) / n). Clamped to `[0, 3]`; 1 when the formula is undefined.
pub fn alie_z(n: usize, m: usize) -> f64 {
    let s = (n / 2 + 1) as f64 - m as f64;
    let p = (n as f64 - s) / n as f64;
    if n == 0 || !(0.0..1.0).contains(&p) || p <= 0.0 {
        return 1.0;
    }
    inverse_normal_cdf(p).clamp(0.0, 3.0)
}

/// Φ⁻¹(p) for `p` in (0, 1), Acklam's rational approximation (relative error < 1.2·10⁻⁹).
/// Written out because no statistics crate is otherwise needed here.
fn inverse_normal_cdf(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(v: &[f32]) -> DenseUpdate {
        DenseUpdate {
            tensors: [("w".to_owned(), v.to_vec())].into_iter().collect(),
        }
    }

    #[test]
    fn inverse_normal_cdf_matches_known_quantiles() {
        for (p, x) in [
            (0.5, 0.0),
            (0.7, 0.524_400_5),
            (0.975, 1.959_964),
            (0.01, -2.326_348),
        ] {
            assert!((inverse_normal_cdf(p) - x).abs() < 1e-5, "Φ⁻¹({p})");
        }
    }

    #[test]
    fn alie_z_follows_the_paper() {
        // n = 10, m = 3: s = 6 − 3 = 3, z = Φ⁻¹(0.7).
        assert!((alie_z(10, 3) - 0.524_400_5).abs() < 1e-5);
        // n = 50, m = 12 (the paper's CIFAR setting): s = 14, z = Φ⁻¹(36/50) ≈ 0.58.
        assert!((alie_z(50, 12) - 0.582_841_5).abs() < 1e-4);
    }

    #[test]
    fn alie_is_mean_minus_z_sigma_per_coordinate() {
        let out = alie(&[update(&[1.0, 0.0]), update(&[3.0, 0.0])], 1.0).unwrap();
        // mean 2, σ 1 → 1; a constant coordinate keeps its mean.
        assert_eq!(out.tensors["w"], vec![1.0, 0.0]);
        assert!(alie(&[], 1.0).is_err());
        assert!(alie(&[update(&[1.0]), update(&[1.0, 2.0])], 1.0).is_err());
    }

    #[test]
    fn noise_touches_only_carried_coordinates_and_is_seeded() {
        let mut a = update(&[0.0, 1.0, -2.0, 0.0]);
        let mut b = a.clone();
        add_noise(&mut a, 0.1, [7; 32]);
        add_noise(&mut b, 0.1, [7; 32]);
        assert_eq!(a, b);
        let w = &a.tensors["w"];
        assert_eq!((w[0], w[3]), (0.0, 0.0));
        assert!(w[1] != 1.0 && (w[1] - 1.0).abs() < 1.0);
        let mut f = update(&[1.0, -2.0]);
        sign_flip(&mut f);
        assert_eq!(f.tensors["w"], vec![-1.0, 2.0]);
    }
}
