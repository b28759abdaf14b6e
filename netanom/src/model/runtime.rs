//! Locating and loading ONNX Runtime.
//!
//! netanom links ONNX Runtime at run time (`ort`'s `load-dynamic`), so the agent binary stays
//! self-contained and the library can be upgraded on its own. The library is the
//! `libonnxruntime.so.1.31.1` shipped in the PyPI wheel `onnxruntime==1.31.1`;
//! `cargo xtask setup` installs it at [`INSTALL_DIR`].
use std::path::{Path, PathBuf};

use thiserror::Error;

/// The ONNX Runtime release netanom is built and tested against.
pub const ORT_VERSION: &str = "1.31.1";
/// Where `cargo xtask setup` installs the library.
pub const INSTALL_DIR: &str = "/usr/local/lib/netanom";
/// Environment variable naming the library explicitly (same as `--ort-lib`).
pub const ENV_LIB: &str = "NETANOM_ORT_LIB";

#[derive(Debug, Error)]
pub enum OrtError {
    #[error(
        "ONNX Runtime was not found (looked in: {searched}). netanom scores traffic with ONNX \
         Runtime {ORT_VERSION}: install it with `cargo xtask setup`, or point --ort-lib (or \
         {ENV_LIB}) at libonnxruntime.so.{ORT_VERSION}, e.g. the one inside the PyPI wheel \
         onnxruntime=={ORT_VERSION} (onnxruntime/capi/)."
    )]
    NotFound { searched: String },
    #[error(
        "ONNX Runtime at {path} could not be loaded: {detail}. Reinstall it with `cargo xtask \
         setup`, or point --ort-lib (or {ENV_LIB}) at a working libonnxruntime.so.{ORT_VERSION}."
    )]
    Load { path: String, detail: String },
}

/// The places searched, in order, when no library is named explicitly.
pub fn search_path() -> Vec<PathBuf> {
    let file = format!("libonnxruntime.so.{ORT_VERSION}");
    let mut v = Vec::new();
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        v.push(PathBuf::from(p));
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        v.push(dir.join(&file));
    }
    v.push(Path::new(INSTALL_DIR).join(&file));
    v.push(Path::new("/usr/lib/netanom").join(&file));
    v
}

/// Finds the library: the explicit path if given (it must exist), else the first of
/// [`search_path`] that exists.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, OrtError> {
    let candidates = match explicit {
        Some(p) => vec![p.to_path_buf()],
        None => search_path(),
    };
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| OrtError::NotFound {
            searched: candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// A loaded ONNX Runtime with its process-wide environment.
pub struct Runtime {
    pub path: PathBuf,
    pub environment: ort::environment::Environment,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Locates and loads ONNX Runtime, and creates the environment sessions are built in.
pub fn load(explicit: Option<&Path>) -> Result<Runtime, OrtError> {
    let path = locate(explicit)?;
    let err = |detail: String| OrtError::Load {
        path: path.display().to_string(),
        detail,
    };
    let builder = ort::init_from(&path).map_err(|e| err(e.to_string()))?;
    let environment = builder
        .with_name("netanom")
        .build()
        .map_err(|e| err(e.to_string()))?;
    Ok(Runtime { path, environment })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_library_says_how_to_install_it() {
        let e = locate(Some(Path::new("/nonexistent/libonnxruntime.so"))).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("/nonexistent/libonnxruntime.so"), "{msg}");
        assert!(
            msg.contains("cargo xtask setup") && msg.contains("--ort-lib"),
            "{msg}"
        );
    }

    #[test]
    fn search_path_ends_with_the_install_dir() {
        let p = search_path();
        assert!(p.iter().any(|p| p.starts_with(INSTALL_DIR)), "{p:?}");
    }
}
