//! ONNX Runtime, once per process: find and load the shared library (never the `ort`
//! crate's download), create the environment, and build sessions on the chosen device.
//!
//! The library is looked for in `ADPS_ORT_DYLIB`, then `ORT_DYLIB_PATH`, then
//! [`LIBRARY_RELATIVE_PATH`] under the current directory, the executable's ancestors and
//! the crate root this binary was built from (so `cargo run`/`cargo test` work in the repo).
//! ONNX Runtime's own messages go to `tracing` (target `ort`) at warning and above unless
//! `ADPS_ORT_LOG` says otherwise. `ADPS_ORT_PROFILE=PREFIX` makes every session write
//! ONNX Runtime's per-kernel profile to `PREFIX-<graph>-<n>_<time>.json` when it is
//! dropped (what `models/bench/graph_cost.py --read-profile` summarises): a developer's
//! tool, the only way to see what adps's own kernels cost inside a graph.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Mutex, OnceLock};

use anyhow::{anyhow, bail, Context, Result};
use ort::environment::Environment;
use ort::ep::{self, ExecutionProvider};
use ort::logging::LogLevel;
use ort::session::builder::SessionBuilder;
use ort::session::Session;

/// Where `scripts/onnxruntime.sh` puts the library, relative to the repository root.
pub const LIBRARY_RELATIVE_PATH: &str = "third_party/onnxruntime/lib/libonnxruntime.so.1.31.1";

/// Environment variables naming the library, in order of precedence.
pub const LIBRARY_ENV_VARS: [&str; 2] = ["ADPS_ORT_DYLIB", "ORT_DYLIB_PATH"];

/// Environment variable setting ONNX Runtime's own log level (default warning).
pub const ORT_LOG_ENV_VAR: &str = "ADPS_ORT_LOG";

/// Environment variable: a path prefix for ONNX Runtime profiles (off when unset).
pub const ORT_PROFILE_ENV_VAR: &str = "ADPS_ORT_PROFILE";

/// Where sessions run: one type for the run spec (`model.device = "auto"`), the sweep spec
/// and the CLI (`--device auto`). Names are read in any case, `gpu` meaning `cuda`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// CPU only.
    Cpu,
    /// CUDA; an error if the CUDA provider cannot be registered (`gpu` is read as `cuda`).
    #[value(alias = "gpu")]
    Cuda,
    /// CUDA where it works, otherwise CPU (said once in the log).
    #[default]
    Auto,
}

impl Device {
    /// The lowercase name used in specs and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
            Device::Auto => "auto",
        }
    }
}

/// Read through [`FromStr`]: any case, `gpu` for `cuda`, and a refusal naming the choices.
impl<'de> serde::Deserialize<'de> for Device {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Device {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "cpu" => Ok(Device::Cpu),
            "cuda" | "gpu" => Ok(Device::Cuda),
            "auto" => Ok(Device::Auto),
            _ => bail!("unknown device {s:?} (expected cpu, cuda or auto)"),
        }
    }
}

/// How sessions are built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionConfig {
    /// Requested device; the one actually used is reported by the session.
    pub device: Device,
    /// Intra-op threads per session; 0 leaves ONNX Runtime's default (one per core).
    pub intra_threads: usize,
}

impl SessionConfig {
    pub fn new(device: Device, intra_threads: usize) -> Self {
        Self {
            device,
            intra_threads,
        }
    }
}

static ENVIRONMENT: OnceLock<Environment> = OnceLock::new();
static INIT_LOCK: Mutex<()> = Mutex::new(());

/// Load ONNX Runtime and create the process's environment (idempotent, thread-safe).
/// Returns the library path on first success.
pub fn init() -> Result<&'static Environment> {
    if let Some(env) = ENVIRONMENT.get() {
        return Ok(env);
    }
    let _guard = INIT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(env) = ENVIRONMENT.get() {
        return Ok(env);
    }
    let path = library_path()?;
    let builder = ort::init_from(&path)
        .map_err(|e| anyhow!("loading ONNX Runtime from {}: {e}", path.display()))?;
    let env = builder
        .with_name("adps")
        .with_telemetry(false)
        .build()
        .map_err(|e| anyhow!("creating the ONNX Runtime environment: {e}"))?;
    env.set_log_level(ort_log_level()?);
    tracing::debug!(library = %path.display(), "ONNX Runtime loaded");
    Ok(ENVIRONMENT.get_or_init(|| env))
}

/// ONNX Runtime's own log level: [`ORT_LOG_ENV_VAR`] or warning (its info level narrates
/// every graph transformer of every session).
fn ort_log_level() -> Result<LogLevel> {
    let Some(value) = std::env::var(ORT_LOG_ENV_VAR)
        .ok()
        .filter(|v| !v.is_empty())
    else {
        return Ok(LogLevel::Warning);
    };
    Ok(match value.to_ascii_lowercase().as_str() {
        "verbose" => LogLevel::Verbose,
        "info" => LogLevel::Info,
        "warning" | "warn" => LogLevel::Warning,
        "error" => LogLevel::Error,
        "fatal" => LogLevel::Fatal,
        _ => bail!("{ORT_LOG_ENV_VAR}={value:?}: expected verbose, info, warning, error or fatal"),
    })
}

/// The ONNX Runtime library this process loads (see the module doc for the search order).
pub fn library_path() -> Result<PathBuf> {
    let vars: Vec<(&str, Option<std::ffi::OsString>)> = LIBRARY_ENV_VARS
        .iter()
        .map(|v| (*v, std::env::var_os(v)))
        .collect();
    resolve_library(&vars, &library_candidates())
}

fn resolve_library(
    vars: &[(&str, Option<std::ffi::OsString>)],
    candidates: &[PathBuf],
) -> Result<PathBuf> {
    for (var, value) in vars {
        if let Some(value) = value.as_ref().filter(|v| !v.is_empty()) {
            let path = PathBuf::from(value);
            if path.is_file() {
                return Ok(path);
            }
            bail!(
                "ONNX Runtime library not found: {var}={} is not a file; run scripts/onnxruntime.sh or fix {var}",
                path.display()
            );
        }
    }
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    bail!(
        "ONNX Runtime library not found (looked in {}, and in ${} / ${}); run scripts/onnxruntime.sh",
        looked.join(", "),
        LIBRARY_ENV_VARS[0],
        LIBRARY_ENV_VARS[1]
    )
}

fn library_candidates() -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.push(cwd);
    }
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
    }
    roots.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let mut out: Vec<PathBuf> = Vec::new();
    for root in roots {
        let p = root.join(LIBRARY_RELATIVE_PATH);
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// Outcome of the first `auto` request for CUDA, shared by every later session.
static AUTO_CUDA: OnceLock<std::result::Result<(), String>> = OnceLock::new();

/// Why `--device auto` runs on CPU in this process (None: not decided yet, or CUDA works).
pub fn auto_fallback_reason() -> Option<String> {
    AUTO_CUDA.get().and_then(|r| r.as_ref().err().cloned())
}

/// Build a session for `path` on `config.device`; returns it with the device really used
/// (never `Auto`).
pub fn build_session(path: &Path, config: &SessionConfig) -> Result<(Session, Device)> {
    let env = init()?;
    match config.device {
        Device::Cpu => Ok((commit(cpu_builder(env, config)?, path)?, Device::Cpu)),
        Device::Cuda => {
            let session = cuda_builder(env, config)
                .and_then(|b| commit(b, path))
                .map_err(|e| anyhow!("--device cuda: {e:#}"))?;
            Ok((session, Device::Cuda))
        }
        Device::Auto => {
            if let Some(Err(_)) = AUTO_CUDA.get() {
                return Ok((commit(cpu_builder(env, config)?, path)?, Device::Cpu));
            }
            match cuda_builder(env, config).and_then(|b| commit(b, path)) {
                Ok(session) => {
                    if AUTO_CUDA.set(Ok(())).is_ok() {
                        tracing::info!("ONNX Runtime: running on CUDA");
                    }
                    Ok((session, Device::Cuda))
                }
                Err(e) => {
                    let reason = format!("{e:#}");
                    if AUTO_CUDA.set(Err(reason.clone())).is_ok() {
                        tracing::warn!("ONNX Runtime: CUDA unavailable, running on CPU ({reason})");
                    }
                    Ok((commit(cpu_builder(env, config)?, path)?, Device::Cpu))
                }
            }
        }
    }
}

fn builder(env: &Environment, config: &SessionConfig) -> Result<SessionBuilder> {
    let mut b = Session::builder(env).map_err(|e| anyhow!("creating session options: {e}"))?;
    // Idle intra-op threads sleep instead of spinning: the pipeline's other stages
    // (decode, the sampler's Rust math, metrics, encode) and other restore workers need
    // the same cores between two model calls. Measured on 2 busy cores, 32 images,
    // 49 steps: 2 threads took 41 s spinning, see the README's performance section.
    b = b
        .with_intra_op_spinning(false)
        .map_err(|e| anyhow!("turning intra-op spinning off: {e}"))?;
    if config.intra_threads > 0 {
        b = b
            .with_intra_threads(config.intra_threads)
            .map_err(|e| anyhow!("setting {} intra-op threads: {e}", config.intra_threads))?;
    }
    Ok(b)
}

/// The CPU session: [`builder`] with adps's fused kernels ([`super::fused`]) for the
/// graphs' `adps.*` nodes (on CUDA their ONNX functions are inlined instead).
fn cpu_builder(env: &Environment, config: &SessionConfig) -> Result<SessionBuilder> {
    let domain = super::fused::domain(config.intra_threads)
        .map_err(|e| anyhow!("building the adps op domain: {e}"))?;
    builder(env, config)?
        .with_operators(domain)
        .map_err(|e| anyhow!("registering adps's fused kernels: {e}"))
}

fn cuda_builder(env: &Environment, config: &SessionConfig) -> Result<SessionBuilder> {
    let available = ep::CUDA::is_available().unwrap_or(false);
    if !available {
        bail!(
            "the CUDA execution provider is not in this ONNX Runtime build ({}); install the GPU build with scripts/onnxruntime.sh --gpu",
            library_path().map(|p| p.display().to_string()).unwrap_or_default()
        );
    }
    let b = builder(env, config)?;
    b.with_execution_providers([ep::CUDA::default().build().error_on_failure()])
        .map_err(|e| anyhow!("registering the CUDA execution provider: {e}"))
}

fn commit(mut b: SessionBuilder, path: &Path) -> Result<Session> {
    if let Some(prefix) = std::env::var_os(ORT_PROFILE_ENV_VAR).filter(|v| !v.is_empty()) {
        // One file per session: ONNX Runtime's own suffix is a time in whole seconds,
        // which the sessions of one run share.
        static SESSIONS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = SESSIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy())
            .unwrap_or_default();
        let file = format!("{}-{stem}-{n}", prefix.to_string_lossy());
        b = b
            .with_profiling(&file)
            .map_err(|e| anyhow!("{ORT_PROFILE_ENV_VAR}: enabling the profiler ({file}): {e}"))?;
    }
    b.commit_from_file(path)
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("{}: ONNX Runtime could not load the graph", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_round_trips() {
        for d in [Device::Cpu, Device::Cuda, Device::Auto] {
            assert_eq!(d.to_string().parse::<Device>().unwrap(), d);
        }
        assert_eq!("GPU".parse::<Device>().unwrap(), Device::Cuda);
        assert!("tpu"
            .parse::<Device>()
            .unwrap_err()
            .to_string()
            .contains("cpu, cuda or auto"));
    }

    #[test]
    fn device_names_are_the_same_in_specs_and_flags() {
        use clap::ValueEnum;
        for (d, name) in [
            (Device::Cpu, "cpu"),
            (Device::Cuda, "cuda"),
            (Device::Auto, "auto"),
        ] {
            assert_eq!(serde_json::to_value(d).unwrap(), serde_json::json!(name));
            assert_eq!(
                serde_json::from_value::<Device>(serde_json::json!(name)).unwrap(),
                d
            );
            assert_eq!(<Device as ValueEnum>::from_str(name, false), Ok(d));
        }
        for gpu in ["gpu", "GPU", "Cuda"] {
            assert_eq!(
                serde_json::from_value::<Device>(serde_json::json!(gpu)).unwrap(),
                Device::Cuda
            );
        }
        assert_eq!(
            <Device as ValueEnum>::from_str("gpu", false),
            Ok(Device::Cuda)
        );
        let err = serde_json::from_value::<Device>(serde_json::json!("tpu")).unwrap_err();
        assert!(err.to_string().contains("cpu, cuda or auto"), "{err}");
    }

    #[test]
    fn missing_library_says_what_to_run() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join(LIBRARY_RELATIVE_PATH);
        let e = resolve_library(
            &[("ADPS_ORT_DYLIB", None), ("ORT_DYLIB_PATH", None)],
            std::slice::from_ref(&missing),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("ONNX Runtime library not found (looked in"),
            "{e}"
        );
        assert!(
            e.contains(&missing.display().to_string()) && e.ends_with("run scripts/onnxruntime.sh"),
            "{e}"
        );

        let e = resolve_library(
            &[("ADPS_ORT_DYLIB", Some(missing.clone().into_os_string()))],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("ADPS_ORT_DYLIB=") && e.contains("run scripts/onnxruntime.sh"),
            "{e}"
        );
    }

    #[test]
    fn env_var_wins_over_candidates() {
        let tmp = tempfile::tempdir().unwrap();
        let lib = tmp.path().join("lib.so");
        std::fs::write(&lib, b"").unwrap();
        let other = tmp.path().join("other.so");
        std::fs::write(&other, b"").unwrap();
        let vars = [
            ("ADPS_ORT_DYLIB", None),
            ("ORT_DYLIB_PATH", Some(lib.clone().into_os_string())),
        ];
        assert_eq!(
            resolve_library(&vars, std::slice::from_ref(&other)).unwrap(),
            lib
        );
        assert_eq!(
            resolve_library(&[("ADPS_ORT_DYLIB", None)], std::slice::from_ref(&other)).unwrap(),
            other
        );
    }
}
