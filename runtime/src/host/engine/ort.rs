//! Float inference through onnxruntime (the `ort` crate), loading `libonnxruntime` at run time.
//!
//! The library is found, in order, at `ORT_DYLIB_PATH` (the `ort` crate's own convention; a file, or a
//! directory holding the library) or inside an installed Python `onnxruntime` wheel
//! (`site-packages/onnxruntime/capi/`). It is loaded once per process; a missing or unusable library
//! is an [`EngineError::Ort`], never a panic.

use super::runner::{check, fixed_batch, onnx_specs, Runner, TensorSpec, Values};
use super::{check_latents, generator_inputs, Engine, EngineError};
use crate::import::LatentGenerator;
use crate::interp::check_classes;
use ::ort::environment::Environment;
use ::ort::session::Session;
use ::ort::value::TensorRef;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Environment variable naming the onnxruntime shared library.
pub const DYLIB_ENV: &str = "ORT_DYLIB_PATH";

fn ort_err(e: impl std::fmt::Display) -> EngineError {
    EngineError::Ort(e.to_string())
}

fn how_to_fix() -> String {
    format!(
        "set {DYLIB_ENV}=/path/to/{}onnxruntime{} or `pip install onnxruntime` (its wheel carries the library)",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// Is `name` the main onnxruntime library (`libonnxruntime.so`, `libonnxruntime.so.1.32.0`,
/// `libonnxruntime.1.32.0.dylib`, `onnxruntime.dll`), not one of its provider libraries?
fn is_onnxruntime_library(name: &str) -> bool {
    let plain = format!(
        "{}onnxruntime{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    if name == plain {
        return true;
    }
    let version = |s: &str| {
        !s.is_empty()
            && s.split('.')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    };
    if let Some(rest) = name.strip_prefix("libonnxruntime.so.") {
        return version(rest);
    }
    if let Some(rest) = name
        .strip_prefix("libonnxruntime.")
        .and_then(|r| r.strip_suffix(".dylib"))
    {
        return version(rest);
    }
    false
}

/// The onnxruntime library inside `dir`; the shortest name wins (the plain `libonnxruntime.so` if present).
fn library_in(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(is_onnxruntime_library)
        })
        .collect();
    found.sort_by_key(|p| p.file_name().map_or(0, |n| n.len()));
    found.into_iter().next()
}

/// `site-packages/onnxruntime` of the `python3` on `PATH`, if it has onnxruntime installed.
/// Uses `find_spec` rather than `import` so that it is quick and does not need numpy.
fn python_onnxruntime_dir() -> Option<PathBuf> {
    const SCRIPT: &str = "import importlib.util as u\n\
                          s = u.find_spec('onnxruntime')\n\
                          print(list(s.submodule_search_locations)[0] if s and s.submodule_search_locations else '')";
    for python in ["python3", "python"] {
        let Ok(out) = std::process::Command::new(python)
            .args(["-c", SCRIPT])
            .stderr(std::process::Stdio::null())
            .output()
        else {
            continue;
        };
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !dir.is_empty() {
            return Some(PathBuf::from(dir));
        }
    }
    None
}

/// Where to load onnxruntime from, given the value of `ORT_DYLIB_PATH` (`None` or empty when unset).
///
/// A set variable must name an existing file (or a directory holding the library); otherwise the
/// Python `onnxruntime` wheel is searched. Errors say how to point at the library.
pub fn resolve_library(env: Option<&str>) -> Result<PathBuf, EngineError> {
    if let Some(value) = env.filter(|v| !v.trim().is_empty()) {
        let path = PathBuf::from(value);
        if path.is_file() {
            return Ok(path);
        }
        if path.is_dir() {
            return library_in(&path).ok_or_else(|| {
                EngineError::Ort(format!(
                    "{DYLIB_ENV}={value} is a directory without an onnxruntime library; {}",
                    how_to_fix()
                ))
            });
        }
        return Err(EngineError::Ort(format!(
            "{DYLIB_ENV}={value}: no such file; {}",
            how_to_fix()
        )));
    }
    if let Some(dir) = python_onnxruntime_dir() {
        if let Some(lib) = library_in(&dir.join("capi")).or_else(|| library_in(&dir)) {
            return Ok(lib);
        }
    }
    Err(EngineError::Ort(format!(
        "cannot find the onnxruntime shared library; {}",
        how_to_fix()
    )))
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

/// The loader's message, with the system's reason when `dlopen` failed (libloading keeps it in `source()`).
fn load_error(e: &::ort::LoadDynamicError) -> String {
    match e {
        ::ort::LoadDynamicError::Dlopen { error, path } => {
            let reason = std::error::Error::source(error)
                .map_or_else(|| error.to_string(), |s| s.to_string());
            let shown = path.display().to_string();
            if reason.starts_with(&shown) {
                format!("cannot load {reason}")
            } else {
                format!("cannot load {shown}: {reason}")
            }
        }
        e => e.to_string(),
    }
}

/// Loads the library and builds the process-wide environment, once. A failure is remembered too.
fn environment() -> Result<&'static Environment, EngineError> {
    static ENV: OnceLock<Result<Environment, String>> = OnceLock::new();
    let init = || -> Result<Environment, String> {
        let var = std::env::var(DYLIB_ENV).ok();
        let path = resolve_library(var.as_deref()).map_err(|e| match e {
            EngineError::Ort(m) => m,
            e => e.to_string(),
        })?;
        let shown = path.display().to_string();
        let build = || -> Result<Environment, String> {
            let builder = ::ort::init_from(&path)
                .map_err(|e| format!("{}; {}", load_error(&e), how_to_fix()))?;
            builder
                .with_name("pocketgan")
                .with_telemetry(false)
                .build()
                .map_err(|e| format!("cannot start onnxruntime from {shown}: {e}"))
        };
        // The loader panics on some broken libraries (a null API table, for example).
        catch_unwind(AssertUnwindSafe(build)).unwrap_or_else(|p| {
            Err(format!(
                "loading {shown} failed: {}; {}",
                panic_message(&*p),
                how_to_fix()
            ))
        })
    };
    ENV.get_or_init(init)
        .as_ref()
        .map_err(|m| EngineError::Ort(m.clone()))
}

/// A session over `onnx` running each operator on `threads` threads (0: onnxruntime's default).
fn session(onnx: &[u8], threads: usize) -> Result<Session, EngineError> {
    super::runner::check_weights(onnx)?;
    let env = environment()?;
    catch_unwind(AssertUnwindSafe(|| -> Result<Session, EngineError> {
        let mut builder = Session::builder(env)
            .map_err(ort_err)?
            .with_intra_threads(threads)
            .map_err(ort_err)?;
        builder.commit_from_memory(onnx).map_err(ort_err)
    }))
    .unwrap_or_else(|p| {
        Err(EngineError::Ort(format!(
            "creating the session panicked: {}",
            panic_message(&*p)
        )))
    })
}

/// Float inference through onnxruntime's CPU provider.
pub struct OrtEngine {
    session: Session,
    inputs: LatentGenerator,
    output: String,
    latent: usize,
    image: (usize, usize, usize),
}

impl OrtEngine {
    /// Loads an ONNX generator whose input is `[N, latent]` or `[N, latent, 1, 1]` (plus the
    /// classes `[N]` of a conditional one) and first output `[N, C, H, W]`, running each operator on `threads`
    /// threads (0: onnxruntime's default).
    pub fn new(
        onnx: &[u8],
        latent: usize,
        image: (usize, usize, usize),
        threads: usize,
    ) -> Result<OrtEngine, EngineError> {
        let session = session(onnx, threads)?;
        let mut inputs = generator_inputs(onnx);
        let names: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        match &inputs.class {
            // An unconditional generator's one input is its latent, whatever its name.
            None => {
                inputs.latent_input = names
                    .first()
                    .ok_or_else(|| EngineError::Ort("the model has no input".into()))?
                    .to_string()
            }
            Some((class, _)) => {
                if names.len() != 2 || !names.contains(&class.as_str()) {
                    return Err(EngineError::Ort(format!(
                        "the session's inputs are {names:?}; expected {} and {class}",
                        inputs.latent_input
                    )));
                }
            }
        }
        let output = session
            .outputs()
            .first()
            .ok_or_else(|| EngineError::Ort("the model has no output".into()))?
            .name()
            .to_string();
        Ok(OrtEngine {
            session,
            inputs,
            output,
            latent,
            image,
        })
    }
}

impl Engine for OrtEngine {
    fn name(&self) -> String {
        "onnxruntime f32".into()
    }
    fn latent(&self) -> usize {
        self.latent
    }
    fn image_shape(&self) -> (usize, usize, usize) {
        self.image
    }
    fn classes(&self) -> usize {
        self.inputs.classes
    }
    fn slots(&self) -> usize {
        self.inputs.slots()
    }
    fn generate_with(
        &mut self,
        z: &[f32],
        classes: &[u32],
        n: usize,
    ) -> Result<Vec<f32>, EngineError> {
        check_latents(z, n, self.latent)?;
        check_classes(self.inputs.classes, self.inputs.slots(), n, classes)?;
        // pytorch/examples' DCGAN takes its latent as `[N, latent, 1, 1]`.
        let shape = match self.inputs.latent_rank {
            4 => vec![n, self.latent, 1, 1],
            _ => vec![n, self.latent],
        };
        let tensor = TensorRef::from_array_view((shape, z)).map_err(ort_err)?;
        let latent = self.inputs.latent_input.as_str();
        let outputs = match &self.inputs.class {
            None => self.session.run(::ort::inputs![latent => tensor]),
            Some((class, _)) => {
                let labels: Vec<i64> = classes.iter().map(|&c| c as i64).collect();
                let shape: Vec<usize> = std::iter::once(n)
                    .chain(self.inputs.class_shape.iter().copied())
                    .collect();
                let labels = TensorRef::from_array_view((shape, &labels[..])).map_err(ort_err)?;
                self.session
                    .run(::ort::inputs![latent => tensor, class.as_str() => labels])
            }
        }
        .map_err(ort_err)?;
        let value = outputs
            .get(&self.output)
            .ok_or_else(|| EngineError::Ort(format!("no output {:?}", self.output)))?;
        let (shape, data) = value.try_extract_tensor::<f32>().map_err(ort_err)?;
        let (c, h, w) = self.image;
        if data.len() != n * c * h * w {
            return Err(EngineError::Ort(format!(
                "output {:?} has shape {:?}; expected [{n}, {c}, {h}, {w}]",
                self.output, shape
            )));
        }
        Ok(data.to_vec())
    }
}

/// Any ONNX graph through onnxruntime: float inputs (images, latents, sequences) and int64
/// class indices, float outputs, as [`Runner`] describes them. Output shapes are those of the
/// last run (the graph may leave them symbolic).
pub struct OrtRunner {
    session: Session,
    /// The batch of an export without a dynamic batch axis: onnxruntime, unlike tract, takes no
    /// other.
    batch: Option<usize>,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
}

impl OrtRunner {
    pub fn new(onnx: &[u8], threads: usize) -> Result<OrtRunner, EngineError> {
        let (inputs, outputs) = onnx_specs(onnx)?;
        Ok(OrtRunner {
            session: session(onnx, threads)?,
            batch: fixed_batch(onnx),
            inputs,
            outputs,
        })
    }
}

impl Runner for OrtRunner {
    fn name(&self) -> String {
        "onnxruntime f32".into()
    }
    fn inputs(&self) -> Vec<TensorSpec> {
        self.inputs.clone()
    }
    fn outputs(&self) -> Vec<TensorSpec> {
        self.outputs.clone()
    }
    fn run(&mut self, inputs: &[Values], n: usize) -> Result<Vec<Values>, EngineError> {
        check(&self.inputs, inputs, n)?;
        if let Some(b) = self.batch.filter(|&b| b != n) {
            return Err(EngineError::Ort(format!(
                "this ONNX file was exported for batches of exactly {b}, not {n}: export it with a \
                 dynamic batch axis (torch.onnx.export(..., dynamic_axes={{NAME: {{0: \"N\"}}}})), \
                 or use the tract engine"
            )));
        }
        let indices: Vec<Vec<i64>> = inputs
            .iter()
            .map(|v| match v {
                Values::Index(c) => c.iter().map(|&c| c as i64).collect(),
                Values::F32(_) => Vec::new(),
            })
            .collect();
        let mut feed = Vec::with_capacity(inputs.len());
        for ((spec, v), idx) in self.inputs.iter().zip(inputs).zip(&indices) {
            let shape: Vec<usize> = std::iter::once(n)
                .chain(spec.shape.iter().copied())
                .collect();
            let value: ::ort::session::SessionInputValue = match v {
                Values::F32(x) => TensorRef::from_array_view((shape, &x[..]))
                    .map_err(ort_err)?
                    .into(),
                Values::Index(_) => TensorRef::from_array_view((shape, &idx[..]))
                    .map_err(ort_err)?
                    .into(),
            };
            feed.push((spec.name.clone(), value));
        }
        let outputs = self.session.run(feed).map_err(ort_err)?;
        let mut result = Vec::with_capacity(self.outputs.len());
        for spec in self.outputs.iter_mut() {
            let value = outputs
                .get(&spec.name)
                .ok_or_else(|| EngineError::Ort(format!("no output {:?}", spec.name)))?;
            let (shape, data) = value.try_extract_tensor::<f32>().map_err(ort_err)?;
            spec.shape = shape.iter().skip(1).map(|&d| d.max(0) as usize).collect();
            result.push(Values::F32(data.to_vec()));
        }
        Ok(result)
    }
}
