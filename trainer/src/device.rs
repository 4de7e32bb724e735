//! Choosing where training runs. CPU (Burn's pure-Rust `flex` backend) works everywhere; the
//! deprecated `ndarray` backend and the GPU backends are compiled in by cargo features.

use burn::prelude::Device;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// Burn's `flex` CPU backend.
    Cpu,
    /// Burn's deprecated `ndarray` CPU backend (feature `ndarray`), kept for comparison.
    Ndarray,
    /// wgpu: Vulkan, Metal or DX12 (feature `wgpu`).
    Wgpu,
    /// CUDA (feature `cuda`).
    Cuda,
}

#[derive(Debug, thiserror::Error)]
#[error("device `{0}` is not compiled in: rebuild with `--features {0}`")]
pub struct DeviceUnavailable(pub &'static str);

impl DeviceKind {
    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::Cpu => "cpu",
            DeviceKind::Ndarray => "ndarray",
            DeviceKind::Wgpu => "wgpu",
            DeviceKind::Cuda => "cuda",
        }
    }

    /// The Burn device (without autodiff).
    pub fn device(self) -> Result<Device, DeviceUnavailable> {
        match self {
            DeviceKind::Cpu => Ok(Device::flex()),
            #[cfg(feature = "ndarray")]
            #[allow(deprecated)] // kept on purpose, to compare against
            DeviceKind::Ndarray => Ok(Device::ndarray()),
            #[cfg(feature = "wgpu")]
            DeviceKind::Wgpu => Ok(Device::wgpu(Default::default())),
            #[cfg(feature = "cuda")]
            DeviceKind::Cuda => Ok(Device::cuda(0)),
            #[allow(unreachable_patterns)]
            other => Err(DeviceUnavailable(other.name())),
        }
    }

    /// Every backend compiled into this binary.
    pub fn available() -> Vec<DeviceKind> {
        [
            DeviceKind::Cpu,
            DeviceKind::Ndarray,
            DeviceKind::Wgpu,
            DeviceKind::Cuda,
        ]
        .into_iter()
        .filter(|k| k.device().is_ok())
        .collect()
    }
}

/// Size the global thread pool that the CPU backends use; `None` keeps rayon's default (all cores).
pub fn set_threads(threads: Option<usize>) {
    if let Some(t) = threads {
        // Fails only if the pool already exists, in which case its size stays as it was.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build_global();
    }
}
