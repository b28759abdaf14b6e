//! The report the sections append to.
use std::fmt::Write as _;

/// One benchmark section: appends its table to the report.
pub(crate) type Step = fn(&mut Report, bool) -> anyhow::Result<()>;

pub(crate) struct Report {
    pub(crate) text: String,
}

impl Report {
    pub(crate) fn section(&mut self, title: &str, note: &str) {
        let _ = write!(self.text, "\n## {title}\n\n{note}\n\n");
        println!("\n## {title}\n\n{note}\n");
    }
    pub(crate) fn line(&mut self, l: String) {
        println!("{l}");
        self.text.push_str(&l);
        self.text.push('\n');
    }
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
