//! Why a configuration was refused: one paragraph naming the file, the line and column (or the
//! key), and what is allowed.
use std::path::PathBuf;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "cannot read the configuration file {}: {error}; check the path given to --config",
        path.display()
    )]
    Read { path: PathBuf, error: std::io::Error },
    /// Bad TOML, an unknown key, a value of the wrong type or a bad prefix. `line` and
    /// `column` count from 1 (`column` in characters); 0 when the parser gave no position.
    #[error("{}: {message}", location(origin, *line, *column))]
    Parse {
        origin: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// A value of the right type outside its allowed range.
    #[error("{}{key} = {value} is not allowed: {allowed}", in_origin(origin))]
    Invalid {
        origin: Option<String>,
        /// `section.key`.
        key: String,
        value: String,
        allowed: String,
    },
}

fn location(origin: &str, line: usize, column: usize) -> String {
    if line == 0 {
        origin.to_owned()
    } else {
        format!("{origin}:{line}:{column}")
    }
}

fn in_origin(origin: &Option<String>) -> String {
    origin.as_ref().map(|o| format!("{o}: ")).unwrap_or_default()
}

impl ConfigError {
    pub(super) fn with_origin(self, o: &str) -> ConfigError {
        match self {
            ConfigError::Invalid {
                origin: None,
                key,
                value,
                allowed,
            } => ConfigError::Invalid {
                origin: Some(o.to_owned()),
                key,
                value,
                allowed,
            },
            e => e,
        }
    }
}

/// 1-based line and column (in characters) of byte offset `at` in `text`.
pub(super) fn line_column(text: &str, at: usize) -> (usize, usize) {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[start..].chars().count() + 1)
}
