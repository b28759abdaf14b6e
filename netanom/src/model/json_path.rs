//! A cursor into a JSON document that remembers its path, so that an error names the key
//! (`models.rf.threshold`) and the file.
use serde_json::Value;

use super::ModelError;

/// A cursor into the JSON document that remembers its path, for error messages.
#[derive(Clone)]
pub(crate) struct At<'a> {
    pub v: &'a Value,
    path: String,
    origin: &'a str,
}

impl<'a> At<'a> {
    pub(crate) fn root(v: &'a Value, origin: &'a str) -> Self {
        Self {
            v,
            path: String::new(),
            origin,
        }
    }
    pub(crate) fn err(&self, what: impl std::fmt::Display) -> ModelError {
        let path = if self.path.is_empty() {
            "the top level".to_owned()
        } else {
            format!("`{}`", self.path)
        };
        ModelError::manifest(self.origin, format!("{path} {what}"))
    }
    pub(crate) fn origin(&self) -> &'a str {
        self.origin
    }
    pub(crate) fn path(&self) -> &str {
        &self.path
    }
    /// Child `key`, which must be present and not null.
    pub(crate) fn get(&self, key: &str) -> Result<At<'a>, ModelError> {
        self.opt(key)?.ok_or_else(|| self.missing(key))
    }
    /// The error for a missing key.
    pub(crate) fn missing(&self, key: &str) -> ModelError {
        ModelError::manifest(self.origin, format!("`{}` is missing", self.child_path(key)))
    }
    pub(crate) fn opt(&self, key: &str) -> Result<Option<At<'a>>, ModelError> {
        let obj = self.v.as_object().ok_or_else(|| self.err("must be an object"))?;
        Ok(obj.get(key).filter(|v| !v.is_null()).map(|v| At {
            v,
            path: self.child_path(key),
            origin: self.origin,
        }))
    }
    fn child_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }
    pub(crate) fn index(&self, i: usize, v: &'a Value) -> At<'a> {
        At {
            v,
            path: format!("{}[{i}]", self.path),
            origin: self.origin,
        }
    }
    pub(crate) fn str(&self) -> Result<&'a str, ModelError> {
        self.v.as_str().ok_or_else(|| self.err("must be a string"))
    }
    pub(crate) fn f64(&self) -> Result<f64, ModelError> {
        self.v
            .as_f64()
            .filter(|x| x.is_finite())
            .ok_or_else(|| self.err("must be a finite number"))
    }
    pub(crate) fn u64(&self) -> Result<u64, ModelError> {
        self.v
            .as_u64()
            .ok_or_else(|| self.err("must be a non-negative integer"))
    }
    pub(crate) fn array(&self) -> Result<Vec<At<'a>>, ModelError> {
        let a = self.v.as_array().ok_or_else(|| self.err("must be a list"))?;
        Ok(a.iter().enumerate().map(|(i, v)| self.index(i, v)).collect())
    }
    pub(crate) fn strings(&self) -> Result<Vec<String>, ModelError> {
        self.array()?.iter().map(|a| a.str().map(str::to_owned)).collect()
    }
    pub(crate) fn f64s(&self) -> Result<Vec<f64>, ModelError> {
        self.array()?.iter().map(At::f64).collect()
    }
    pub(crate) fn keys(&self) -> Result<Vec<&'a str>, ModelError> {
        let obj = self.v.as_object().ok_or_else(|| self.err("must be an object"))?;
        Ok(obj.keys().map(String::as_str).collect())
    }
}
