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

#[derive(Debug, Clone, thiserror::Error)]
pub enum DeviceUnavailable {
    #[error("device `{0}` is not compiled in: rebuild with `--features {0}`")]
    NotCompiled(&'static str),
    /// The backend is compiled in but the machine has no such hardware (or no driver for it).
    #[error("device `{kind}` is compiled in but not usable here: {reason}")]
    NoHardware { kind: &'static str, reason: String },
}

impl DeviceKind {
    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::Cpu => "cpu",
            DeviceKind::Ndarray => "ndarray",
            DeviceKind::Wgpu => "wgpu",
            DeviceKind::Cuda => "cuda",
        }
    }

    /// The Burn device (without autodiff). GPU devices are opened here, through Burn's fallible
    /// APIs, so that missing hardware is an error now rather than a panic inside the backend at
    /// the first tensor operation.
    pub fn device(self) -> Result<Device, DeviceUnavailable> {
        match self {
            DeviceKind::Cpu => Ok(Device::flex()),
            #[cfg(feature = "ndarray")]
            #[allow(deprecated)] // kept on purpose, to compare against
            DeviceKind::Ndarray => Ok(Device::ndarray()),
            #[cfg(feature = "wgpu")]
            DeviceKind::Wgpu => wgpu_device(),
            #[cfg(feature = "cuda")]
            DeviceKind::Cuda => cuda_device(),
            #[allow(unreachable_patterns)]
            other => Err(DeviceUnavailable::NotCompiled(other.name())),
        }
    }

    /// Every backend compiled into this binary, whether or not its hardware is present.
    pub fn compiled() -> Vec<DeviceKind> {
        [
            DeviceKind::Cpu,
            DeviceKind::Ndarray,
            DeviceKind::Wgpu,
            DeviceKind::Cuda,
        ]
        .into_iter()
        .filter(|k| k.is_compiled())
        .collect()
    }

    fn is_compiled(self) -> bool {
        match self {
            DeviceKind::Cpu => true,
            DeviceKind::Ndarray => cfg!(feature = "ndarray"),
            DeviceKind::Wgpu => cfg!(feature = "wgpu"),
            DeviceKind::Cuda => cfg!(feature = "cuda"),
        }
    }
}

/// The default wgpu adapter (a discrete GPU first; `CUBECL_WGPU_DEFAULT_DEVICE` overrides),
/// initialised once per process: Burn refuses a second initialisation of the same runtime.
#[cfg(feature = "wgpu")]
fn wgpu_device() -> Result<Device, DeviceUnavailable> {
    static WGPU: std::sync::OnceLock<Result<Device, String>> = std::sync::OnceLock::new();
    WGPU.get_or_init(|| Device::wgpu_options().init().map_err(|e| e.to_string()))
        .clone()
        .map_err(|reason| DeviceUnavailable::NoHardware {
            kind: "wgpu",
            reason,
        })
}

/// The first CUDA device. `Device::cuda` itself is lazy and the CUDA runtime panics at the first
/// operation without a driver, but enumeration checks for `libcuda` first and lists nothing.
#[cfg(feature = "cuda")]
fn cuda_device() -> Result<Device, DeviceUnavailable> {
    burn::tensor::Device::enumerate(burn::tensor::DeviceType::Cuda)
        .into_vec()
        .into_iter()
        .next()
        .ok_or(DeviceUnavailable::NoHardware {
            kind: "cuda",
            reason: "no CUDA device found (is the NVIDIA driver, libcuda.so, installed?)".into(),
        })
}

/// Size the global thread pool that the CPU backends use; `None` keeps rayon's default (all cores).
/// Its threads get the main thread's 8 MiB of stack, as [`on_pool`] runs whole training loops there.
pub fn set_threads(threads: Option<usize>) {
    let mut pool = rayon::ThreadPoolBuilder::new().stack_size(8 << 20);
    if let Some(t) = threads {
        pool = pool.num_threads(t);
    }
    // Fails only if the pool already exists, in which case it stays as it was.
    let _ = pool.build_global();
}

/// Runs `f` on a thread of the global pool and waits for it. Every parallel operator then starts
/// on a pool thread, which splits the work in place, instead of on a thread outside the pool, which
/// must hand each operator to the pool and sleep until it is done: a wake-up and a sleep per
/// operator, hundreds per training iteration.
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}
