//! A small CSV reader and field writer (RFC 4180: comma separator, double-quoted fields with
//! `""` escapes and embedded commas or line breaks, `\n` or `\r\n` line ends). Blank lines are
//! skipped, as pandas does.
use std::{
    io::{self, BufRead, Write},
    ops::Range,
};

/// One record: its fields, borrowed from a reused buffer.
#[derive(Debug, Default)]
pub struct Record {
    text: String,
    bounds: Vec<Range<usize>>,
    /// 1-based line number where the record starts.
    pub line: usize,
}

impl Record {
    pub fn len(&self) -> usize {
        self.bounds.len()
    }
    pub fn is_empty(&self) -> bool {
        self.bounds.is_empty()
    }
    pub fn get(&self, i: usize) -> &str {
        &self.text[self.bounds[i].clone()]
    }
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.bounds.iter().map(|b| &self.text[b.clone()])
    }
}

/// Why a record could not be read.
#[derive(Debug)]
pub enum CsvError {
    Io(io::Error),
    /// A quoted field is not closed before the end of the file (line where the record starts).
    UnclosedQuote {
        line: usize,
    },
    /// Text follows a closing quote inside a field.
    AfterQuote {
        line: usize,
    },
    /// The bytes are not UTF-8.
    NotUtf8 {
        line: usize,
    },
}

impl std::fmt::Display for CsvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(e) => write!(f, "read error: {e}"),
            Self::UnclosedQuote { line } => write!(f, "line {line}: a quoted field is never closed"),
            Self::AfterQuote { line } => {
                write!(f, "line {line}: characters follow a closing quote inside a field")
            }
            Self::NotUtf8 { line } => write!(f, "line {line}: the text is not UTF-8"),
        }
    }
}

impl std::error::Error for CsvError {}

pub struct Reader<R> {
    inner: R,
    line: usize,
    buf: Vec<u8>,
}

impl<R: BufRead> Reader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            line: 0,
            buf: Vec::new(),
        }
    }

    /// Number of lines read so far.
    pub fn line(&self) -> usize {
        self.line
    }

    /// Reads the next non-blank record into `rec`; `Ok(false)` at the end of the input.
    pub fn read(&mut self, rec: &mut Record) -> Result<bool, CsvError> {
        rec.text.clear();
        rec.bounds.clear();
        // Skip blank lines.
        loop {
            self.buf.clear();
            let n = self
                .inner
                .read_until(b'\n', &mut self.buf)
                .map_err(CsvError::Io)?;
            if n == 0 {
                return Ok(false);
            }
            self.line += 1;
            trim_eol(&mut self.buf);
            if !self.buf.is_empty() {
                break;
            }
        }
        rec.line = self.line;
        let mut start_field = true;
        let mut quoted = false;
        let mut closed = false;
        let mut field_start = 0;
        let mut i = 0;
        loop {
            if i == self.buf.len() {
                if quoted && !closed {
                    // The quoted field continues on the next line.
                    let mut more = Vec::new();
                    let n = self.inner.read_until(b'\n', &mut more).map_err(CsvError::Io)?;
                    if n == 0 {
                        return Err(CsvError::UnclosedQuote { line: rec.line });
                    }
                    self.line += 1;
                    trim_eol(&mut more);
                    self.buf.push(b'\n');
                    self.buf.extend_from_slice(&more);
                    continue;
                }
                rec.bounds.push(field_start..rec.text.len());
                return Ok(true);
            }
            let b = self.buf[i];
            if start_field {
                start_field = false;
                quoted = b == b'"';
                closed = false;
                field_start = rec.text.len();
                if quoted {
                    i += 1;
                    continue;
                }
            }
            if quoted && !closed {
                if b == b'"' {
                    if self.buf.get(i + 1) == Some(&b'"') {
                        rec.text.push('"');
                        i += 2;
                    } else {
                        closed = true;
                        i += 1;
                    }
                    continue;
                }
                let j = self.buf[i..]
                    .iter()
                    .position(|&c| c == b'"')
                    .map_or(self.buf.len(), |p| i + p);
                append(rec, &self.buf[i..j], rec.line)?;
                i = j;
                continue;
            }
            if b == b',' {
                rec.bounds.push(field_start..rec.text.len());
                start_field = true;
                i += 1;
                if i == self.buf.len() {
                    // Trailing comma: one more, empty field.
                    rec.bounds.push(rec.text.len()..rec.text.len());
                    return Ok(true);
                }
                continue;
            }
            if closed {
                return Err(CsvError::AfterQuote { line: rec.line });
            }
            let j = self.buf[i..]
                .iter()
                .position(|&c| c == b',')
                .map_or(self.buf.len(), |p| i + p);
            append(rec, &self.buf[i..j], rec.line)?;
            i = j;
        }
    }
}

fn append(rec: &mut Record, bytes: &[u8], line: usize) -> Result<(), CsvError> {
    rec.text
        .push_str(std::str::from_utf8(bytes).map_err(|_| CsvError::NotUtf8 { line })?);
    Ok(())
}

fn trim_eol(buf: &mut Vec<u8>) {
    if buf.last() == Some(&b'\n') {
        buf.pop();
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
}

/// Writes one field, quoted when it holds a comma, a quote or a line break.
pub fn write_field<W: Write + ?Sized>(w: &mut W, field: &str) -> io::Result<()> {
    if field.contains([',', '"', '\n', '\r']) {
        w.write_all(b"\"")?;
        w.write_all(field.replace('"', "\"\"").as_bytes())?;
        w.write_all(b"\"")
    } else {
        w.write_all(field.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &str) -> Result<Vec<(usize, Vec<String>)>, CsvError> {
        let mut r = Reader::new(text.as_bytes());
        let mut rec = Record::default();
        let mut out = Vec::new();
        while r.read(&mut rec)? {
            out.push((rec.line, rec.iter().map(str::to_owned).collect()));
        }
        Ok(out)
    }

    #[test]
    fn reads_plain_and_quoted_fields() {
        let got = all("a,b,c\r\n1,,3\n\n\"x,y\",\"say \"\"hi\"\"\",z\n4,5,\n").unwrap();
        assert_eq!(
            got,
            vec![
                (1, vec!["a".into(), "b".into(), "c".into()]),
                (2, vec!["1".into(), "".into(), "3".into()]),
                (4, vec!["x,y".into(), "say \"hi\"".into(), "z".into()]),
                (5, vec!["4".into(), "5".into(), "".into()]),
            ]
        );
        // A line break inside quotes; the line count goes on.
        let got = all("\"a\nb\",c\nd,e").unwrap();
        assert_eq!(got[0], (1, vec!["a\nb".into(), "c".into()]));
        assert_eq!(got[1], (3, vec!["d".into(), "e".into()]));
    }

    #[test]
    fn malformed_quotes_are_errors() {
        assert!(matches!(
            all("a,\"b\nc"),
            Err(CsvError::UnclosedQuote { line: 1 })
        ));
        assert!(matches!(
            all("x\n\"b\"c,d"),
            Err(CsvError::AfterQuote { line: 2 })
        ));
    }

    #[test]
    fn writes_fields_that_read_back() {
        let mut out = Vec::new();
        for (i, f) in ["plain", "a,b", "q\"q", ""].iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_field(&mut out, f).unwrap();
        }
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, "plain,\"a,b\",\"q\"\"q\",");
        assert_eq!(all(&text).unwrap()[0].1, ["plain", "a,b", "q\"q", ""]);
    }
}
