//! Where training's matrix products run: the CPU, or a CUDA device when the
//! crate is built with the `cuda` feature. Opening a device is checked once,
//! when a server starts; what runs on it is in `ensemble.rs`. Serving's
//! forward passes stay on the CPU.

use std::fmt;

pub use candle_core::Device;

/// The device an operator asked training to run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainingDevice {
    Cpu,
    /// A CUDA device by its ordinal.
    Cuda(usize),
}

/// Why a training device cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("this build has no CUDA support; rebuild with `cargo build --features cuda`")]
    NotCompiled,
    #[error("CUDA device {ordinal} cannot be opened: {detail}")]
    Unavailable { ordinal: usize, detail: String },
}

impl TrainingDevice {
    /// The device, opened: always works for the CPU; for CUDA, only in a
    /// build with the `cuda` feature and on a machine with that device.
    pub fn open(self) -> Result<Device, DeviceError> {
        match self {
            TrainingDevice::Cpu => Ok(Device::Cpu),
            TrainingDevice::Cuda(ordinal) => match Device::new_cuda(ordinal) {
                Ok(device) => Ok(device),
                // candle's stand-in backend answers this in builds without
                // its `cuda` feature.
                Err(candle_core::Error::NotCompiledWithCudaSupport) => Err(DeviceError::NotCompiled),
                Err(error) => Err(DeviceError::Unavailable {
                    ordinal,
                    detail: error.to_string(),
                }),
            },
        }
    }
}

impl fmt::Display for TrainingDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrainingDevice::Cpu => f.write_str("cpu"),
            TrainingDevice::Cuda(ordinal) => write!(f, "cuda:{ordinal}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_always_opens() {
        assert!(matches!(TrainingDevice::Cpu.open(), Ok(Device::Cpu)));
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_says_how_to_get_it() {
        let error = TrainingDevice::Cuda(0).open().unwrap_err();
        assert!(matches!(error, DeviceError::NotCompiled), "{error:?}");
        assert!(error.to_string().contains("--features cuda"), "{error}");
    }

    #[test]
    fn devices_are_named_as_the_flag_takes_them() {
        assert_eq!(TrainingDevice::Cpu.to_string(), "cpu");
        assert_eq!(TrainingDevice::Cuda(3).to_string(), "cuda:3");
    }
}
