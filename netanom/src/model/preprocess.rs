//! Raw row → model-input vector, exactly as the bundle's manifest prescribes.
//!
//! The manifest's scorer contract (`scorer.steps`, format 2; `preprocessing`, format 1) leaves
//! the scorer two steps: read the raw columns, then build the float32 input vector — a numeric
//! column is copied unchanged (already rounded to f32), a categorical column becomes a one-hot
//! block (1.0 at its category's element, all zeros for a category the bundle has never seen).
//! Everything else (signed log1p, min-max scaling) happens inside the ONNX graphs and is NOT
//! repeated here. A manifest that asks the scorer for a step this module does not know is
//! refused when the bundle loads.
use std::collections::HashMap;

use super::{ModelError, json_path::At};

/// The canonical code of a category the bundle does not know: it gives an all-zero one-hot
/// block. Any other value that is not the index of a category does the same.
pub const UNSEEN_CATEGORY: f32 = -1.0;

/// One raw input column.
#[derive(Clone, Debug, PartialEq)]
pub enum Column {
    /// Copied to input-vector element `element`.
    Numeric { element: usize },
    /// One-hot: category `k` sets element `elements[k]` to 1.0.
    Categorical {
        categories: Vec<String>,
        elements: Vec<usize>,
    },
}

/// Why a raw value could not be turned into an input value.
#[derive(Clone, Debug, PartialEq)]
pub enum ValueError {
    /// Empty field.
    Empty,
    /// Not a number (for a numeric column).
    NotANumber,
    /// NaN or ±inf (after rounding to f32).
    NonFinite,
}

impl std::fmt::Display for ValueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Empty => "the value is empty",
            Self::NotANumber => "the value is not a number",
            Self::NonFinite => "NaN and infinite values are refused",
        })
    }
}

/// The bundle's raw input columns and how they become the model-input vector.
#[derive(Clone, Debug)]
pub struct Preprocessor {
    names: Vec<String>,
    columns: Vec<Column>,
    /// category string → index, per column (empty map for numeric columns).
    lookup: Vec<HashMap<String, u32>>,
    n_features: usize,
}

impl Preprocessor {
    /// Builds the preprocessor from the manifest's scorer contract (format 2) or its
    /// `preprocessing` key (format 1), and checks it against `features`.
    pub(crate) fn from_manifest(
        root: &At<'_>,
        n_features: usize,
        features: &[String],
    ) -> Result<Self, ModelError> {
        let (names, columns) = match root.opt("scorer")? {
            Some(s) => from_contract(&s, n_features)?,
            None => from_v1(&root.get("preprocessing")?, features)?,
        };
        let p = Self::new(names, columns, n_features).map_err(|d| {
            ModelError::manifest(
                root.origin(),
                format!("its preprocessing steps are inconsistent: {d}"),
            )
        })?;
        // The element names the manifest lists must be those the layout gives.
        for (j, want) in features.iter().enumerate() {
            let got = p.element_name(j);
            if &got != want {
                return Err(ModelError::manifest(
                    root.origin(),
                    format!(
                        "input element {j} is `{got}` by the preprocessing steps but `{want}` in `features`"
                    ),
                ));
            }
        }
        Ok(p)
    }

    /// A preprocessor from its parts; checks that the columns cover each of the `n_features`
    /// elements exactly once.
    pub fn new(names: Vec<String>, columns: Vec<Column>, n_features: usize) -> Result<Self, String> {
        if names.len() != columns.len() {
            return Err(format!(
                "{} column names for {} columns",
                names.len(),
                columns.len()
            ));
        }
        if names.is_empty() {
            return Err("lists no raw input columns".into());
        }
        let mut seen = vec![false; n_features];
        let mut dup_names = HashMap::new();
        for (c, (name, col)) in names.iter().zip(&columns).enumerate() {
            if let Some(prev) = dup_names.insert(name.as_str(), c) {
                return Err(format!("raw columns {prev} and {c} are both named `{name}`"));
            }
            let elems: &[usize] = match col {
                Column::Numeric { element } => std::slice::from_ref(element),
                Column::Categorical { categories, elements } => {
                    if categories.len() != elements.len() {
                        return Err(format!(
                            "column `{name}`: {} categories for {} elements",
                            categories.len(),
                            elements.len()
                        ));
                    }
                    elements
                }
            };
            for &e in elems {
                match seen.get_mut(e) {
                    None => {
                        return Err(format!(
                            "column `{name}` maps to element {e}, beyond n_features {n_features}"
                        ));
                    }
                    Some(true) => return Err(format!("element {e} is produced twice (column `{name}`)")),
                    Some(s) => *s = true,
                }
            }
        }
        if let Some(e) = seen.iter().position(|s| !s) {
            return Err(format!("input element {e} is produced by no raw column"));
        }
        let lookup = columns
            .iter()
            .map(|c| match c {
                Column::Numeric { .. } => HashMap::new(),
                Column::Categorical { categories, .. } => categories
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (v.clone(), i as u32))
                    .collect(),
            })
            .collect();
        Ok(Self {
            names,
            columns,
            lookup,
            n_features,
        })
    }

    /// The raw input columns the bundle wants, in order (what a raw row holds).
    pub fn input_names(&self) -> &[String] {
        &self.names
    }

    /// Number of raw input columns.
    pub fn n_inputs(&self) -> usize {
        self.names.len()
    }

    /// Width of the model-input vector.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// Whether raw column `col` is categorical.
    pub fn is_categorical(&self, col: usize) -> bool {
        matches!(self.columns[col], Column::Categorical { .. })
    }

    /// The code of `value` in categorical column `col` (its index in the manifest's list, as
    /// f32), or [`UNSEEN_CATEGORY`]. Compared exactly, after trimming surrounding whitespace
    /// as the training loader does. A numeric column gives [`UNSEEN_CATEGORY`].
    pub fn category_code(&self, col: usize, value: &str) -> f32 {
        self.lookup[col]
            .get(value.trim())
            .map_or(UNSEEN_CATEGORY, |&i| i as f32)
    }

    /// Turns one CSV field of raw column `col` into its raw-row value: a number (parsed as
    /// f64, then rounded to f32, as the Python pipeline does) or a category code.
    pub fn encode(&self, col: usize, text: &str) -> Result<f32, ValueError> {
        let t = text.trim();
        if t.is_empty() {
            return Err(ValueError::Empty);
        }
        if self.is_categorical(col) {
            return Ok(self.category_code(col, t));
        }
        let x: f64 = t.parse().map_err(|_| ValueError::NotANumber)?;
        let x = x as f32;
        if x.is_finite() {
            Ok(x)
        } else {
            Err(ValueError::NonFinite)
        }
    }

    /// Name of input element `j` (`duration`, `protocol_type=tcp`, ...).
    pub fn element_name(&self, j: usize) -> String {
        for (name, col) in self.names.iter().zip(&self.columns) {
            match col {
                Column::Numeric { element } if *element == j => return name.clone(),
                Column::Categorical { categories, elements } => {
                    if let Some(k) = elements.iter().position(|e| *e == j) {
                        return format!("{name}={}", categories[k]);
                    }
                }
                _ => {}
            }
        }
        format!("#{j}")
    }

    /// Builds the input vector `out` (length [`Self::n_features`]) from raw column values
    /// `raw(c)`. Returns `Err(c)` for the first raw column holding NaN or ±inf (`out` is then
    /// unspecified), else `Ok(true)` when some categorical value was unseen.
    #[inline]
    pub fn transform(&self, raw: impl Fn(usize) -> f32, out: &mut [f32]) -> Result<bool, usize> {
        debug_assert_eq!(out.len(), self.n_features);
        let mut unseen = false;
        for (c, col) in self.columns.iter().enumerate() {
            let x = raw(c);
            if !x.is_finite() {
                return Err(c);
            }
            match col {
                Column::Numeric { element } => out[*element] = x,
                Column::Categorical { elements, .. } => {
                    for &e in elements {
                        out[e] = 0.0;
                    }
                    // Only an exact non-negative integer index is a category.
                    let k = x as usize;
                    if x >= 0.0 && k as f32 == x && k < elements.len() {
                        out[elements[k]] = 1.0;
                    } else {
                        unseen = true;
                    }
                }
            }
        }
        Ok(unseen)
    }
}

/// Format 2: `scorer.raw_columns` and the `build_input_vector` step's element list.
fn from_contract(s: &At<'_>, n_features: usize) -> Result<(Vec<String>, Vec<Column>), ModelError> {
    let (names, categorical) = raw_columns(&s.get("raw_columns")?)?;
    let build = build_step(s, &names, n_features)?;
    let index: HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
    let mut columns: Vec<Option<Column>> = categorical
        .iter()
        .map(|&cat| {
            cat.then(|| Column::Categorical {
                categories: Vec::new(),
                elements: Vec::new(),
            })
        })
        .collect();
    for (pos, e) in build.get("elements")?.array()?.into_iter().enumerate() {
        let j = match e.opt("index")? {
            Some(i) => i.u64()? as usize,
            None => pos,
        };
        let src_at = e.get("source")?;
        let src = src_at.str()?;
        let c = *index
            .get(src)
            .ok_or_else(|| src_at.err(format!("names `{src}`, which is not in `scorer.raw_columns`")))?;
        place_element(&e, src, j, &mut columns[c])?;
    }
    let columns = columns
        .into_iter()
        .zip(&names)
        .map(|(c, name)| {
            c.ok_or_else(|| build.err(format!("produces no element for the numeric column `{name}`")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((names, columns))
}

/// The raw columns' names, and whether each is categorical.
fn raw_columns(raw_at: &At<'_>) -> Result<(Vec<String>, Vec<bool>), ModelError> {
    let mut names = Vec::new();
    let mut categorical = Vec::new();
    for c in raw_at.array()? {
        names.push(c.get("name")?.str()?.to_owned());
        let ty_at = c.get("type")?;
        categorical.push(match ty_at.str()? {
            "numeric" => false,
            "categorical" => true,
            other => {
                return Err(ty_at.err(format!(
                    "is {other:?}; this netanom knows raw columns of type \"numeric\" and \"categorical\""
                )));
            }
        });
    }
    Ok((names, categorical))
}

/// The `build_input_vector` step, after checking that every step is one this scorer
/// implements and that the steps agree with the raw columns and `n_features`.
fn build_step<'a>(s: &At<'a>, names: &[String], n_features: usize) -> Result<At<'a>, ModelError> {
    const KNOWN_STEPS: [&str; 6] = [
        "read_raw_columns",
        "build_input_vector",
        "run_models",
        "normalise",
        "per_model_decision",
        "ensemble",
    ];
    let mut build = None;
    for step in s.get("steps")?.array()? {
        let op_at = step.get("op")?;
        let op = op_at.str()?;
        if !KNOWN_STEPS.contains(&op) {
            return Err(op_at.err(format!(
                "is the step {op:?}, which this netanom does not implement (it implements {}); \
                 use a netanom release that matches the bundle",
                KNOWN_STEPS.join(", ")
            )));
        }
        match op {
            "read_raw_columns" => {
                if let Some(cols) = step.opt("columns")? {
                    let cols = cols.strings()?;
                    if cols != names {
                        return Err(step
                            .get("columns")?
                            .err("must list the same columns, in the same order, as `scorer.raw_columns`"));
                    }
                }
            }
            "build_input_vector" => build = Some(step),
            _ => {}
        }
    }
    let build = build.ok_or_else(|| s.err("has no step with op \"build_input_vector\""))?;
    if let Some(d) = build.opt("dtype")? {
        let d = d.str()?;
        if d != "float32" {
            return Err(build
                .get("dtype")?
                .err(format!("must be \"float32\", found {d:?}")));
        }
    }
    if let Some(n) = build.opt("n_elements")? {
        let n = n.u64()? as usize;
        if n != n_features {
            return Err(build
                .get("n_elements")?
                .err(format!("is {n}, but `n_features` is {n_features}")));
        }
    }
    Ok(build)
}

/// Puts element `e` (vector position `j`, from raw column `src`) into the column's layout.
fn place_element(e: &At<'_>, src: &str, j: usize, column: &mut Option<Column>) -> Result<(), ModelError> {
    let kind_at = e.get("kind")?;
    match (kind_at.str()?, column) {
        ("numeric", slot @ None) => *slot = Some(Column::Numeric { element: j }),
        ("numeric", Some(_)) => {
            return Err(e.err(format!(
                "is a second element (or a numeric element) for column `{src}`, which must produce exactly one"
            )));
        }
        ("onehot", Some(Column::Categorical { categories, elements })) => {
            let cat = e.get("category")?.str()?.to_owned();
            if categories.contains(&cat) {
                return Err(e.err(format!("repeats category {cat:?} of column `{src}`")));
            }
            categories.push(cat);
            elements.push(j);
        }
        ("onehot", _) => {
            return Err(e.err(format!(
                "is a one-hot element of `{src}`, which is not a categorical column"
            )));
        }
        (other, _) => {
            return Err(kind_at.err(format!(
                "is {other:?}; this netanom builds elements of kind \"numeric\" and \"onehot\""
            )));
        }
    }
    Ok(())
}

/// Format 1: `preprocessing.source_columns`, each categorical column replaced in place by its
/// one-hot block in `preprocessing.categories` order.
fn from_v1(p: &At<'_>, features: &[String]) -> Result<(Vec<String>, Vec<Column>), ModelError> {
    let names = p.get("source_columns")?.strings()?;
    let cats_at = p.opt("categories")?;
    let declared = match p.opt("categorical_columns")? {
        Some(c) => c.strings()?,
        None => match &cats_at {
            Some(c) => c.keys()?.into_iter().map(str::to_owned).collect(),
            None => Vec::new(),
        },
    };
    let mut columns = Vec::with_capacity(names.len());
    let mut j = 0;
    for name in &names {
        if declared.contains(name) {
            let cats_at = cats_at
                .as_ref()
                .ok_or_else(|| p.err("has categorical columns but no `categories`"))?;
            let categories = cats_at.get(name)?.strings()?;
            let elements = (j..j + categories.len()).collect();
            j += categories.len();
            columns.push(Column::Categorical { categories, elements });
        } else {
            columns.push(Column::Numeric { element: j });
            j += 1;
        }
    }
    if let Some(c) = declared.iter().find(|c| !names.contains(c)) {
        return Err(p.err(format!(
            "declares the categorical column `{c}`, which is not a source column"
        )));
    }
    if j != features.len() {
        return Err(p.err(format!(
            "expands to {j} input elements, but `features` lists {}",
            features.len()
        )));
    }
    Ok((names, columns))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> Preprocessor {
        // a, proto (tcp, udp), b  ->  [a, proto=tcp, proto=udp, b]
        Preprocessor::new(
            vec!["a".into(), "proto".into(), "b".into()],
            vec![
                Column::Numeric { element: 0 },
                Column::Categorical {
                    categories: vec!["tcp".into(), "udp".into()],
                    elements: vec![1, 2],
                },
                Column::Numeric { element: 3 },
            ],
            4,
        )
        .unwrap()
    }

    #[test]
    fn builds_the_input_vector() {
        let p = toy();
        assert_eq!(p.input_names(), ["a", "proto", "b"]);
        assert_eq!(p.element_name(2), "proto=udp");
        let mut out = [9.0; 4];
        let raw = [1.5, p.category_code(1, "udp"), -2.0];
        assert_eq!(p.transform(|c| raw[c], &mut out), Ok(false));
        assert_eq!(out, [1.5, 0.0, 1.0, -2.0]);
        // Unseen category: all-zero block, flagged.
        let raw = [1.5, p.category_code(1, "icmp"), -2.0];
        assert_eq!(raw[1], UNSEEN_CATEGORY);
        assert_eq!(p.transform(|c| raw[c], &mut out), Ok(true));
        assert_eq!(out, [1.5, 0.0, 0.0, -2.0]);
        // Non-integer or out-of-range codes are unseen too.
        for code in [0.5, 2.0, 1e9] {
            let raw = [0.0, code, 0.0];
            assert_eq!(p.transform(|c| raw[c], &mut out), Ok(true));
            assert_eq!(&out[1..3], [0.0, 0.0]);
        }
        // NaN / inf: refused, naming the column.
        let raw = [0.0, 0.0, f32::NAN];
        assert_eq!(p.transform(|c| raw[c], &mut out), Err(2));
        let raw = [f32::INFINITY, 0.0, 0.0];
        assert_eq!(p.transform(|c| raw[c], &mut out), Err(0));
    }

    #[test]
    fn encodes_csv_fields_like_the_python_loader() {
        let p = toy();
        assert_eq!(p.encode(0, " 0.1 "), Ok(0.1f64 as f32));
        assert_eq!(p.encode(1, " tcp"), Ok(0.0));
        assert_eq!(p.encode(1, "TCP"), Ok(UNSEEN_CATEGORY));
        assert_eq!(p.encode(0, ""), Err(ValueError::Empty));
        assert_eq!(p.encode(0, "abc"), Err(ValueError::NotANumber));
        assert_eq!(p.encode(0, "nan"), Err(ValueError::NonFinite));
        assert_eq!(p.encode(0, "-inf"), Err(ValueError::NonFinite));
        // Finite in f64 but not in f32.
        assert_eq!(p.encode(0, "1e300"), Err(ValueError::NonFinite));
        // f64 parse then f32 rounding (what numpy's astype(float32) does).
        assert_eq!(p.encode(0, "16777217"), Ok(16777216.0));
    }

    #[test]
    fn layouts_must_cover_every_element_once() {
        let e = Preprocessor::new(
            vec!["a".into(), "b".into()],
            vec![Column::Numeric { element: 0 }, Column::Numeric { element: 0 }],
            2,
        )
        .unwrap_err();
        assert!(e.contains("element 0 is produced twice"), "{e}");
        let e = Preprocessor::new(vec!["a".into()], vec![Column::Numeric { element: 0 }], 2).unwrap_err();
        assert!(e.contains("element 1 is produced by no raw column"), "{e}");
        let e = Preprocessor::new(
            vec!["a".into(), "a".into()],
            vec![Column::Numeric { element: 0 }, Column::Numeric { element: 1 }],
            2,
        )
        .unwrap_err();
        assert!(e.contains("both named `a`"), "{e}");
    }
}
