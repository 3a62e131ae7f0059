//! Compute device selection. CPU is the default; `cuda` and `metal` are compile-time features.
//!
//! Without the feature, asking for that device is a typed error rather than a silent CPU
//! fallback, so a misconfigured node does not train 50× slower than its operator expects.

use candle_core::Device;

use super::TrainError;

/// Which device to train and validate on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DeviceChoice {
    /// The CPU (pure-Rust gemm). Threads follow `RAYON_NUM_THREADS`.
    #[default]
    Cpu,
    /// The best device compiled in and present: CUDA, then Metal, then the CPU.
    Auto,
    /// An NVIDIA GPU by ordinal; needs the `cuda` feature.
    Cuda(usize),
    /// An Apple GPU by ordinal; needs the `metal` feature (macOS only).
    Metal(usize),
}

impl std::str::FromStr for DeviceChoice {
    type Err = TrainError;

    /// Parses `cpu`, `auto`, `cuda`, `cuda:N`, `metal` or `metal:N`.
    fn from_str(s: &str) -> Result<Self, TrainError> {
        let (kind, ordinal) = match s.split_once(':') {
            Some((k, n)) => (
                k,
                n.parse::<usize>()
                    .map_err(|_| TrainError::UnknownDevice(s.to_owned()))?,
            ),
            None => (s, 0),
        };
        match kind {
            "cpu" => Ok(Self::Cpu),
            "auto" => Ok(Self::Auto),
            "cuda" => Ok(Self::Cuda(ordinal)),
            "metal" => Ok(Self::Metal(ordinal)),
            _ => Err(TrainError::UnknownDevice(s.to_owned())),
        }
    }
}

/// Opens the chosen device.
pub fn select_device(choice: DeviceChoice) -> Result<Device, TrainError> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Auto => Ok(auto_device()),
        DeviceChoice::Cuda(i) => cuda(i),
        DeviceChoice::Metal(i) => metal(i),
    }
}

#[cfg(feature = "cuda")]
fn cuda(i: usize) -> Result<Device, TrainError> {
    Ok(Device::new_cuda(i)?)
}

#[cfg(not(feature = "cuda"))]
fn cuda(_: usize) -> Result<Device, TrainError> {
    Err(TrainError::DeviceNotCompiled("cuda"))
}

#[cfg(feature = "metal")]
fn metal(i: usize) -> Result<Device, TrainError> {
    Ok(Device::new_metal(i)?)
}

#[cfg(not(feature = "metal"))]
fn metal(_: usize) -> Result<Device, TrainError> {
    Err(TrainError::DeviceNotCompiled("metal"))
}

fn auto_device() -> Device {
    #[cfg(feature = "cuda")]
    if let Ok(d) = Device::new_cuda(0) {
        return d;
    }
    #[cfg(feature = "metal")]
    if let Ok(d) = Device::new_metal(0) {
        return d;
    }
    Device::Cpu
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_gates_devices() {
        assert_eq!("cpu".parse::<DeviceChoice>().ok(), Some(DeviceChoice::Cpu));
        assert_eq!(
            "cuda:1".parse::<DeviceChoice>().ok(),
            Some(DeviceChoice::Cuda(1))
        );
        assert!("tpu".parse::<DeviceChoice>().is_err());
        assert!(select_device(DeviceChoice::Cpu).is_ok());
        assert!(select_device(DeviceChoice::Auto).is_ok());
        #[cfg(not(feature = "cuda"))]
        assert!(matches!(
            select_device(DeviceChoice::Cuda(0)),
            Err(TrainError::DeviceNotCompiled("cuda"))
        ));
        #[cfg(not(feature = "metal"))]
        assert!(matches!(
            select_device(DeviceChoice::Metal(0)),
            Err(TrainError::DeviceNotCompiled("metal"))
        ));
    }
}
