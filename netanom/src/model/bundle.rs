//! A loaded bundle: the validated manifest, the preprocessor and one ONNX Runtime session per
//! model, created once.
use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Mutex,
};

use ort::{environment::Environment, session::Session, value::ValueType};
use sha2::{Digest, Sha256};

use super::runtime as onnx;
use super::{
    ModelError,
    manifest::{Manifest, ModelSpec},
    preprocess::Preprocessor,
};

/// Where the models run.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionProvider {
    /// ONNX Runtime's CPU provider (always available).
    #[default]
    Cpu,
    /// NVIDIA CUDA: needs netanom built with the `cuda` feature, an ONNX Runtime library built
    /// with CUDA (the `onnxruntime-gpu` wheel's) and a GPU; otherwise the CPU is used, with one
    /// warning.
    Cuda,
}

impl ExecutionProvider {
    pub fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
        }
    }
}

impl fmt::Display for ExecutionProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a bundle's sessions are created.
#[derive(Clone)]
pub struct BundleOptions {
    /// Intra-op threads per session (inter-op is always 1). Default 1.
    pub intra_threads: usize,
    /// Requested execution provider. Default CPU.
    pub provider: ExecutionProvider,
    /// Check each ONNX file's size and sha256 against the manifest (when it records them)
    /// before handing it to ONNX Runtime. Default true.
    pub verify_checksums: bool,
    /// The ONNX Runtime library, when no `environment` is given (see [`runtime`]).
    pub ort_lib: Option<PathBuf>,
    /// An ONNX Runtime environment the caller already has (for example
    /// [`crate::onnx::Runtime::environment`]); ONNX Runtime allows one per process. Default:
    /// the process-wide one of [`runtime`].
    pub environment: Option<Environment>,
}

impl Default for BundleOptions {
    fn default() -> Self {
        Self {
            intra_threads: 1,
            provider: ExecutionProvider::Cpu,
            verify_checksums: true,
            ort_lib: None,
            environment: None,
        }
    }
}

impl fmt::Debug for BundleOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BundleOptions")
            .field("intra_threads", &self.intra_threads)
            .field("provider", &self.provider)
            .field("verify_checksums", &self.verify_checksums)
            .field("ort_lib", &self.ort_lib)
            .field("environment", &self.environment.as_ref().map(|_| "given"))
            .finish()
    }
}

/// The process-wide ONNX Runtime (library path, environment): ONNX Runtime allows one
/// environment per process, so every bundle shares it.
static RUNTIME: Mutex<Option<(PathBuf, Environment)>> = Mutex::new(None);

/// The process-wide ONNX Runtime environment, loading the library on first use: `explicit`,
/// else `$NETANOM_ORT_LIB`, else [`onnx::search_path`]. Later calls return the same
/// environment whatever path they name (the library cannot be swapped in a running process).
pub fn environment(explicit: Option<&Path>) -> Result<Environment, ModelError> {
    let mut guard = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((path, env)) = guard.as_ref() {
        if let Some(e) = explicit
            && e != path
        {
            log::warn!(
                "ONNX Runtime is already loaded from {}; ignoring {}",
                path.display(),
                e.display()
            );
        }
        return Ok(env.clone());
    }
    let from_env = std::env::var_os(onnx::ENV_LIB)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
    let rt = onnx::load(explicit.or(from_env.as_deref()))?;
    *guard = Some((rt.path.clone(), rt.environment.clone()));
    Ok(rt.environment)
}

/// Maps a caller's feature order onto the bundle's raw input columns: raw column `j` is the
/// caller's column `gather[j]`. Made by [`Bundle::bind`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// Number of values in each of the caller's rows.
    pub width: usize,
    /// For each bundle raw column, its index in the caller's row.
    pub gather: Vec<usize>,
}

impl Binding {
    /// Whether the caller's rows are already in the bundle's order.
    pub fn is_identity(&self) -> bool {
        self.width == self.gather.len() && self.gather.iter().enumerate().all(|(i, g)| i == *g)
    }
}

/// A bundle ready to score: manifest, preprocessor, sessions.
pub struct Bundle {
    origin: String,
    pub(crate) manifest: Manifest,
    pre: Preprocessor,
    pub(crate) sessions: Vec<Session>,
    provider: ExecutionProvider,
    requested: ExecutionProvider,
    fallback: Option<String>,
    intra_threads: usize,
}

impl fmt::Debug for Bundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bundle")
            .field("origin", &self.origin)
            .field("dataset", &self.manifest.dataset)
            .field("n_features", &self.manifest.n_features)
            .field("rule", &self.manifest.rule)
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

/// The model files of a bundle in memory, keyed by file name (as in the manifest).
pub type ModelFiles<'a> = [(&'a str, &'a [u8])];

impl Bundle {
    /// Loads the bundle in `dir` with default options (CPU, 1 thread, checksums verified).
    pub fn load(dir: impl AsRef<Path>) -> Result<Bundle, ModelError> {
        Self::load_with(dir, &BundleOptions::default())
    }

    /// Loads the bundle in `dir`: reads and validates manifest.json, reads the three ONNX
    /// files, checks them against the manifest, creates the sessions and checks their
    /// interfaces.
    pub fn load_with(dir: impl AsRef<Path>, opts: &BundleOptions) -> Result<Bundle, ModelError> {
        let dir = dir.as_ref();
        let mpath = dir.join("manifest.json");
        if !mpath.is_file() {
            return Err(ModelError::NoBundle {
                dir: dir.to_path_buf(),
                manifest: mpath,
            });
        }
        let text = std::fs::read_to_string(&mpath).map_err(|err| ModelError::Read {
            path: mpath.clone(),
            err,
        })?;
        let origin = mpath.display().to_string();
        let (manifest, pre) = Manifest::parse(&text, &origin)?;
        let mut files = Vec::with_capacity(manifest.models.len());
        for m in &manifest.models {
            let path = dir.join(&m.file);
            if !path.is_file() {
                return Err(ModelError::MissingModel {
                    model: m.name.clone(),
                    path,
                });
            }
            let bytes = std::fs::read(&path).map_err(|err| ModelError::Read {
                path: path.clone(),
                err,
            })?;
            files.push((path.display().to_string(), bytes));
        }
        let file_refs: Vec<(&str, &[u8])> = files.iter().map(|(p, b)| (p.as_str(), b.as_slice())).collect();
        Self::build(dir.display().to_string(), manifest, pre, &file_refs, opts)
    }

    /// A bundle from memory (for example `include_str!`/`include_bytes!` of an embedded
    /// bundle): `manifest_json` is manifest.json's text, `files` maps each model's file name
    /// (as the manifest lists it) to its bytes; `origin` names the bundle in messages.
    pub fn from_memory(
        origin: &str,
        manifest_json: &str,
        files: &ModelFiles<'_>,
        opts: &BundleOptions,
    ) -> Result<Bundle, ModelError> {
        let (manifest, pre) = Manifest::parse(manifest_json, &format!("{origin}/manifest.json"))?;
        let mut ordered = Vec::with_capacity(manifest.models.len());
        for m in &manifest.models {
            let bytes = files
                .iter()
                .find(|(name, _)| *name == m.file)
                .map(|(_, b)| *b)
                .ok_or_else(|| ModelError::MissingModel {
                    model: m.name.clone(),
                    path: Path::new(origin).join(&m.file),
                })?;
            ordered.push((format!("{origin}/{}", m.file), bytes));
        }
        let refs: Vec<(&str, &[u8])> = ordered.iter().map(|(p, b)| (p.as_str(), *b)).collect();
        Self::build(origin.to_owned(), manifest, pre, &refs, opts)
    }

    /// `files`: (origin, bytes) per model, in manifest model order.
    fn build(
        origin: String,
        manifest: Manifest,
        pre: Preprocessor,
        files: &[(&str, &[u8])],
        opts: &BundleOptions,
    ) -> Result<Bundle, ModelError> {
        if opts.verify_checksums {
            for (m, (file, bytes)) in manifest.models.iter().zip(files) {
                verify(m, file, bytes)?;
            }
        }
        let env = match &opts.environment {
            Some(e) => e.clone(),
            None => environment(opts.ort_lib.as_deref())?,
        };
        let threads = opts.intra_threads.max(1);
        let (sessions, provider, fallback) = match opts.provider {
            ExecutionProvider::Cpu => (
                sessions(&env, &manifest, files, threads, false)?,
                ExecutionProvider::Cpu,
                None,
            ),
            ExecutionProvider::Cuda => match cuda_unavailable() {
                Some(why) => {
                    log::warn!("{why}; scoring on the CPU");
                    (
                        sessions(&env, &manifest, files, threads, false)?,
                        ExecutionProvider::Cpu,
                        Some(why),
                    )
                }
                None => match sessions(&env, &manifest, files, threads, true) {
                    Ok(s) => (s, ExecutionProvider::Cuda, None),
                    Err(e) => {
                        let why = format!("CUDA was requested, but {e}");
                        log::warn!("{why}; scoring on the CPU");
                        (
                            sessions(&env, &manifest, files, threads, false)?,
                            ExecutionProvider::Cpu,
                            Some(why),
                        )
                    }
                },
            },
        };
        Ok(Bundle {
            origin,
            manifest,
            pre,
            sessions,
            provider,
            requested: opts.provider,
            fallback,
            intra_threads: threads,
        })
    }

    /// Where the bundle came from (its directory, or the origin given to
    /// [`Self::from_memory`]).
    pub fn origin(&self) -> &str {
        &self.origin
    }
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
    pub fn preprocessor(&self) -> &Preprocessor {
        &self.pre
    }
    /// The execution provider the sessions run on.
    pub fn provider(&self) -> ExecutionProvider {
        self.provider
    }
    /// The provider that was asked for.
    pub fn requested_provider(&self) -> ExecutionProvider {
        self.requested
    }
    /// Why the requested provider is not the active one (`None` when it is).
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback.as_deref()
    }
    pub fn intra_threads(&self) -> usize {
        self.intra_threads
    }

    /// Binds the caller's feature names to the bundle's raw input columns. Every raw column
    /// must be provided; extra names are ignored. See [`Self::bind_strict`].
    pub fn bind<S: AsRef<str>>(&self, provided: &[S]) -> Result<Binding, ModelError> {
        self.bind_mode(provided, false)
    }

    /// Like [`Self::bind`], but names the bundle does not use are refused too.
    pub fn bind_strict<S: AsRef<str>>(&self, provided: &[S]) -> Result<Binding, ModelError> {
        self.bind_mode(provided, true)
    }

    fn bind_mode<S: AsRef<str>>(&self, provided: &[S], strict: bool) -> Result<Binding, ModelError> {
        let wanted = self.pre.input_names();
        let mut gather = Vec::with_capacity(wanted.len());
        let mut missing = Vec::new();
        for w in wanted {
            match provided.iter().position(|p| p.as_ref() == w) {
                Some(i) => gather.push(i),
                None => missing.push(w.clone()),
            }
        }
        let unexpected: Vec<String> = if strict {
            provided
                .iter()
                .map(AsRef::as_ref)
                .filter(|p| !wanted.iter().any(|w| w == p))
                .map(str::to_owned)
                .collect()
        } else {
            Vec::new()
        };
        if let Some(dup) = provided
            .iter()
            .enumerate()
            .find(|(i, p)| provided[..*i].iter().any(|q| q.as_ref() == p.as_ref()))
            .map(|(_, p)| p.as_ref())
            .filter(|d| wanted.iter().any(|w| w == d))
        {
            return Err(ModelError::Bind {
                dataset: self.manifest.dataset.clone(),
                missing: Vec::new(),
                unexpected: vec![format!("{dup} (given twice)")],
            });
        }
        if !missing.is_empty() || !unexpected.is_empty() {
            return Err(ModelError::Bind {
                dataset: self.manifest.dataset.clone(),
                missing,
                unexpected,
            });
        }
        Ok(Binding {
            width: provided.len(),
            gather,
        })
    }
}

/// Size and sha256 of a model file against its manifest entry.
pub(super) fn verify(m: &ModelSpec, origin: &str, bytes: &[u8]) -> Result<(), ModelError> {
    let err = |detail: String| ModelError::Checksum {
        model: m.name.clone(),
        origin: origin.to_owned(),
        detail,
    };
    if let Some(n) = m.bytes
        && n != bytes.len() as u64
    {
        return Err(err(format!(
            "it is {} bytes long, the manifest says {n}",
            bytes.len()
        )));
    }
    if let Some(want) = &m.sha256 {
        let got = Sha256::digest(bytes);
        let got: String = got.iter().map(|b| format!("{b:02x}")).collect();
        if &got != want {
            return Err(err(format!("its sha256 is {got}, the manifest says {want}")));
        }
    }
    Ok(())
}

/// Why CUDA cannot be tried at all, if so.
fn cuda_unavailable() -> Option<String> {
    #[cfg(not(feature = "cuda"))]
    {
        Some("CUDA was requested, but this netanom was built without the `cuda` feature".to_owned())
    }
    #[cfg(feature = "cuda")]
    {
        use ort::ep::ExecutionProvider as _;
        match ort::ep::CUDA::is_available() {
            Ok(true) => None,
            Ok(false) => Some(
                "CUDA was requested, but the loaded ONNX Runtime library has no CUDA execution \
                 provider (the PyPI `onnxruntime` wheel is CPU-only; use the library of \
                 `onnxruntime-gpu`)"
                    .to_owned(),
            ),
            Err(e) => Some(format!(
                "CUDA was requested, but ONNX Runtime could not list its providers ({e})"
            )),
        }
    }
}

fn sessions(
    env: &Environment,
    manifest: &Manifest,
    files: &[(&str, &[u8])],
    threads: usize,
    cuda: bool,
) -> Result<Vec<Session>, ModelError> {
    manifest
        .models
        .iter()
        .zip(files)
        .map(|(m, (origin, bytes))| {
            let onnx_err = |e: ort::Error| ModelError::Onnx {
                model: m.name.clone(),
                origin: (*origin).to_owned(),
                detail: e.to_string(),
            };
            let s = session(env, bytes, threads, cuda, onnx_err)?;
            check_interface(&s, m, manifest.n_features, origin)?;
            Ok(s)
        })
        .collect()
}

/// One session; a CUDA provider that cannot start is [`ModelError::CudaProvider`], not an
/// error of the model file (`onnx_err`).
pub(super) fn session(
    env: &Environment,
    bytes: &[u8],
    threads: usize,
    cuda: bool,
    onnx_err: impl Fn(ort::Error) -> ModelError,
) -> Result<Session, ModelError> {
    let built = || -> Result<_, ort::Error> {
        Ok(Session::builder(env)?
            .with_intra_threads(threads)?
            .with_inter_threads(1)?
            .with_parallel_execution(false)?)
    };
    let b = built().map_err(&onnx_err)?;
    #[cfg(feature = "cuda")]
    let b = if cuda {
        b.with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()])
            .map_err(|e| ModelError::CudaProvider {
                detail: e.to_string().trim_end().to_owned(),
            })?
    } else {
        b
    };
    #[cfg(not(feature = "cuda"))]
    let _ = cuda;
    let mut b = b;
    b.commit_from_memory(bytes).map_err(onnx_err)
}

/// The session's one input and its output named as the manifest says, float32, with the
/// manifest's width.
fn check_interface(s: &Session, m: &ModelSpec, n_features: usize, origin: &str) -> Result<(), ModelError> {
    let err = |detail: String| ModelError::Interface {
        model: m.name.clone(),
        origin: origin.to_owned(),
        detail,
    };
    let inputs: Vec<&str> = s.inputs().iter().map(|o| o.name()).collect();
    if inputs != [m.input.as_str()] {
        return Err(err(format!(
            "its inputs are {inputs:?}, the manifest expects exactly [{:?}]",
            m.input
        )));
    }
    match s.inputs()[0].dtype() {
        ValueType::Tensor {
            ty: ort::value::TensorElementType::Float32,
            shape,
            ..
        } if shape.len() == 2 && (shape[1] == n_features as i64) => {}
        other => {
            return Err(err(format!(
                "its input `{}` is {other}, the manifest expects float32 [batch, {n_features}]",
                m.input
            )));
        }
    }
    let Some(out) = s.outputs().iter().find(|o| o.name() == m.output) else {
        let outs: Vec<&str> = s.outputs().iter().map(|o| o.name()).collect();
        return Err(err(format!(
            "it has no output `{}` (its outputs: {outs:?})",
            m.output
        )));
    };
    match out.dtype() {
        ValueType::Tensor {
            ty: ort::value::TensorElementType::Float32,
            shape,
            ..
        } if shape.len() == 1 => Ok(()),
        other => Err(err(format!(
            "its output `{}` is {other}, the manifest expects float32 [batch]",
            m.output
        ))),
    }
}
