//! Stratosphere behavioural letters: one symbol per flow of a channel, in time order, for the
//! sequence (C&C beacon) model.
//!
//! A channel is the flows from one inside host to one remote host, remote port and protocol.
//! Each flow becomes a symbol `zeros + letter + gap`:
//! - the **letter** (one of 45) comes from three classes of the flow:
//!   - size (total bytes, both directions): 1 when <= 250, 2 when <= 1100, else 3;
//!   - duration (seconds): 1 when <= 0.1, 2 when <= 10, else 3;
//!   - periodicity, from the gap to the previous flow's start (T2) and the gap before that
//!     (T1): the ratio of the larger to the smaller gap is class 1 (strongly periodic) when
//!     <= 1.05, 2 when <= 1.3, 3 when <= 5, else 4. When the smaller gap is 0 the class is 1,
//!     as in the encoder that produced the training data. The first two flows have no T1:
//!     their periodicity is "none" and their letter a digit;
//! - the **gap** (`.` `,` `+` `*` or nothing) classes T2: <= 5 s, <= 60 s, <= 300 s,
//!   <= 3600 s, else nothing (and nothing for the first flow);
//! - the **zeros**: from the third flow on, one `0` per whole hour of T2, at most
//!   [`MAX_HOUR_ZEROS`].
//!
//! A flow that starts before the previous one is taken to start with it (gap 0), so that a
//! channel fed in export order never sees a negative gap.
//!
//! These are the class edges of the encoder that labelled the `stratosphere-letters` data set
//! (Slips). The model pipeline's `models/netanom_models/letters.py` defines the same rules,
//! and the unit test below replays its fixture `models/tests/fixtures/letters_parity.tsv`.
//! This file depends on no other netanom module.
use std::collections::VecDeque;
use std::fmt;

/// Duration class edges, seconds.
pub const DURATION_EDGES_S: [f64; 2] = [0.1, 10.0];
/// Size class edges, total bytes of the flow in both directions.
pub const SIZE_EDGES_BYTES: [u64; 2] = [250, 1100];
/// Edges of the gap ratio max(T1, T2) / min(T1, T2) for periodicity classes 1..=3 (4 above).
pub const PERIODICITY_EDGES: [f64; 3] = [1.05, 1.3, 5.0];
/// Gap symbols: the first whose bound (seconds, inclusive) holds; none above the last.
pub const GAP_SYMBOLS: [(f64, u8); 4] = [(5.0, b'.'), (60.0, b','), (300.0, b'+'), (3600.0, b'*')];
/// One zero per whole hour of silence.
pub const HOUR_S: f64 = 3600.0;
/// Cap on one symbol's zeros (a week; the data set's longest run is 166).
pub const MAX_HOUR_ZEROS: u32 = 168;
/// Characters of a window when no sequence part says otherwise (the default part's
/// `window.max_len`).
pub const DEFAULT_WINDOW: usize = 500;
/// The hour character.
pub const ZERO: u8 = b'0';
/// Letters by periodicity class (0 = none), indexed by 3 * (size - 1) + (duration - 1).
const LETTERS: [&[u8; 9]; 5] = [
    b"123456789",
    b"abcdefghi",
    b"ABCDEFGHI",
    b"rstuvwxyz",
    b"RSTUVWXYZ",
];
/// Every character of a letter string in the model's index order: a character's model index
/// is its position here + 1 (0 is the model's padding).
pub const ALPHABET: &str = "123456789abcdefghiABCDEFGHIrstuvwxyzRSTUVWXYZ.,+*0";

/// What the encoding reads of one flow.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Flow {
    /// Start time, seconds (any epoch: only differences matter).
    pub start: f64,
    /// Seconds.
    pub duration: f64,
    /// Total bytes, both directions.
    pub bytes: u64,
}

/// A flow the encoding cannot read. Nothing of the channel changes when `push` returns one.
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
pub enum LetterError {
    #[error("flow start time {0} is not a finite number of seconds: skip the flow")]
    BadStart(f64),
    #[error("flow duration {0} is not a finite number of seconds >= 0: skip the flow")]
    BadDuration(f64),
}

/// One flow's symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Symbol {
    pub zeros: u32,
    pub letter: u8,
    pub gap: Option<u8>,
}

impl Symbol {
    /// Characters in the symbol's text.
    pub fn len(&self) -> usize {
        self.zeros as usize + 1 + usize::from(self.gap.is_some())
    }

    /// Never empty (there is always a letter); for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The symbol's characters, oldest first.
    pub fn chars(&self) -> impl Iterator<Item = u8> + '_ {
        std::iter::repeat_n(ZERO, self.zeros as usize)
            .chain(std::iter::once(self.letter))
            .chain(self.gap)
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.chars()
            .try_for_each(|c| fmt::Write::write_char(f, char::from(c)))
    }
}

pub fn size_class(bytes: u64) -> u8 {
    let [lo, hi] = SIZE_EDGES_BYTES;
    if bytes <= lo {
        1
    } else if bytes <= hi {
        2
    } else {
        3
    }
}

pub fn duration_class(seconds: f64) -> u8 {
    let [lo, hi] = DURATION_EDGES_S;
    if seconds <= lo {
        1
    } else if seconds <= hi {
        2
    } else {
        3
    }
}

/// 0 without both gaps, else 1 (strongly periodic) ..= 4 (strongly not periodic).
pub fn periodicity_class(t1: Option<f64>, t2: Option<f64>) -> u8 {
    let (Some(t1), Some(t2)) = (t1, t2) else {
        return 0;
    };
    let (small, large) = (t1.min(t2), t1.max(t2));
    if small == 0.0 {
        return 1;
    }
    let ratio = large / small;
    match PERIODICITY_EDGES.iter().position(|&edge| ratio <= edge) {
        Some(i) => i as u8 + 1,
        None => 4,
    }
}

pub fn gap_symbol(t2: Option<f64>) -> Option<u8> {
    let t2 = t2?;
    GAP_SYMBOLS
        .iter()
        .find(|(bound, _)| t2 <= *bound)
        .map(|&(_, sym)| sym)
}

pub fn hour_zeros(t2: f64) -> u32 {
    if t2 < HOUR_S {
        return 0;
    }
    // `as` truncates towards zero, like the Python side's int(); huge values saturate.
    ((t2 / HOUR_S) as u64).min(u64::from(MAX_HOUR_ZEROS)) as u32
}

/// The letter of classes (periodicity 0..=4, size 1..=3, duration 1..=3).
pub fn letter(periodicity: u8, size: u8, duration: u8) -> u8 {
    LETTERS[usize::from(periodicity)][3 * usize::from(size - 1) + usize::from(duration - 1)]
}

/// The model index of a letter-string character (1-based position in [`ALPHABET`]).
pub fn alphabet_index(c: u8) -> Option<i64> {
    ALPHABET.bytes().position(|a| a == c).map(|i| i as i64 + 1)
}

/// Encodes one channel's flows as they arrive, one symbol each. Keeps two numbers.
#[derive(Clone, Debug, Default)]
pub struct ChannelEncoder {
    flows: u64,
    last_start: Option<f64>,
    /// T1 of the next flow.
    last_gap: Option<f64>,
}

impl ChannelEncoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Flows encoded so far.
    pub fn flows(&self) -> u64 {
        self.flows
    }

    /// The next flow's symbol.
    pub fn push(&mut self, flow: &Flow) -> Result<Symbol, LetterError> {
        if !flow.start.is_finite() {
            return Err(LetterError::BadStart(flow.start));
        }
        if !(flow.duration.is_finite() && flow.duration >= 0.0) {
            return Err(LetterError::BadDuration(flow.duration));
        }
        let start = self.last_start.map_or(flow.start, |last| flow.start.max(last));
        let t2 = self.last_start.map(|last| start - last);
        let t1 = self.last_gap;
        let zeros = match (t1, t2) {
            (Some(_), Some(t2)) => hour_zeros(t2),
            _ => 0,
        };
        let periodicity = periodicity_class(t1, t2);
        let letter = letter(periodicity, size_class(flow.bytes), duration_class(flow.duration));
        self.last_gap = t2;
        self.last_start = Some(start);
        self.flows += 1;
        Ok(Symbol {
            zeros,
            letter,
            gap: gap_symbol(t2),
        })
    }
}

/// The letter string of one channel's flows, sorted by start time first (stable).
pub fn encode(flows: &[Flow]) -> Result<String, LetterError> {
    let mut sorted = flows.to_vec();
    sorted.sort_by(|a, b| a.start.total_cmp(&b.start));
    let mut enc = ChannelEncoder::new();
    let mut out = String::new();
    for f in &sorted {
        out.push_str(&enc.push(f)?.to_string());
    }
    Ok(out)
}

/// A channel's most recent symbols, at most `max_len` characters: the sequence model's input.
/// Whole symbols are dropped from the old end; when the newest symbol alone is longer (a long
/// run of zeros), the window is its last `max_len` characters.
#[derive(Clone, Debug)]
pub struct SymbolWindow {
    symbols: VecDeque<Symbol>,
    chars: usize,
    max_len: usize,
}

impl SymbolWindow {
    /// `max_len` is at least 1.
    pub fn new(max_len: usize) -> Self {
        Self {
            symbols: VecDeque::new(),
            chars: 0,
            max_len: max_len.max(1),
        }
    }

    pub fn push(&mut self, sym: Symbol) {
        self.chars += sym.len();
        self.symbols.push_back(sym);
        while self.chars > self.max_len && self.symbols.len() > 1 {
            if let Some(old) = self.symbols.pop_front() {
                self.chars -= old.len();
            }
        }
    }

    /// The window's characters, oldest first.
    pub fn chars(&self) -> impl Iterator<Item = u8> + '_ {
        let skip = self.chars.saturating_sub(self.max_len);
        self.symbols.iter().flat_map(Symbol::chars).skip(skip)
    }

    pub fn text(&self) -> String {
        self.chars().map(char::from).collect()
    }

    /// Appends the model indices of the window (one per character) to `out`.
    pub fn indices_into(&self, out: &mut Vec<i64>) {
        // Every character a Symbol holds is in ALPHABET.
        out.extend(self.chars().filter_map(alphabet_index));
    }

    /// Characters in the window (at most `max_len`).
    pub fn len(&self) -> usize {
        self.chars.min(self.max_len)
    }

    pub fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by `python -m netanom_models letters-fixture` (models/netanom_models/letters_parity.py).
    const FIXTURE: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../models/tests/fixtures/letters_parity.tsv"
    ));
    const FIXTURE_WINDOW: usize = 12;

    fn flow(start: f64, duration: f64, bytes: u64) -> Flow {
        Flow {
            start,
            duration,
            bytes,
        }
    }

    fn next_up(x: f64) -> f64 {
        f64::from_bits(x.to_bits() + 1)
    }

    /// One fixture row: the channel, the flow, and what the Python encoder wrote for it.
    struct Row<'a> {
        channel: &'a str,
        flow: Flow,
        symbol: &'a str,
        window: &'a str,
        indices: Vec<i64>,
    }

    fn fixture_rows() -> Vec<Row<'static>> {
        let mut lines = FIXTURE.lines();
        assert_eq!(
            lines.next(),
            Some("channel\tstart\tduration\tbytes\tsymbol\twindow12\tindices12")
        );
        lines
            .map(|line| {
                let c: Vec<&str> = line.split('\t').collect();
                assert_eq!(c.len(), 7, "{line}");
                Row {
                    channel: c[0],
                    flow: flow(
                        c[1].parse().unwrap(),
                        c[2].parse().unwrap(),
                        c[3].parse().unwrap(),
                    ),
                    symbol: c[4],
                    window: c[5],
                    indices: c[6].split(' ').map(|s| s.parse().unwrap()).collect(),
                }
            })
            .collect()
    }

    #[test]
    fn python_fixture_gives_the_same_symbols_windows_and_indices() {
        let rows = fixture_rows();
        let channels: Vec<&[Row]> = rows.chunk_by(|a, b| a.channel == b.channel).collect();
        for chan in &channels {
            let mut enc = ChannelEncoder::new();
            let mut win = SymbolWindow::new(FIXTURE_WINDOW);
            for r in chan.iter() {
                let sym = enc.push(&r.flow).unwrap();
                assert_eq!(
                    sym.to_string(),
                    r.symbol,
                    "channel {} flow {:?}",
                    r.channel,
                    r.flow
                );
                win.push(sym);
                assert_eq!(win.text(), r.window, "window, channel {}", r.channel);
                let mut idx = Vec::new();
                win.indices_into(&mut idx);
                assert_eq!(idx, r.indices, "indices, channel {}", r.channel);
            }
            // `encode` of flows already in start order gives the same string
            let flows: Vec<Flow> = chan.iter().map(|r| r.flow).collect();
            if flows.windows(2).all(|w| w[0].start <= w[1].start) {
                let text: String = chan.iter().map(|r| r.symbol).collect();
                assert_eq!(encode(&flows).unwrap(), text, "channel {}", chan[0].channel);
            }
        }
        assert!(
            rows.len() >= 500 && channels.len() >= 40,
            "fixture too small: {} rows, {} channels",
            rows.len(),
            channels.len()
        );
    }

    /// The shipped sequence part (`models/default/sequence.json`) was trained on this encoding.
    #[test]
    fn shipped_sequence_part_uses_this_encoding() {
        let man: serde_json::Value = serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../models/default/sequence.json"
        )))
        .unwrap();
        let enc = &man["encoding"];
        assert_eq!(enc["alphabet"], ALPHABET);
        assert_eq!(enc["size_edges_bytes"], serde_json::json!(SIZE_EDGES_BYTES));
        assert_eq!(enc["duration_edges_s"], serde_json::json!(DURATION_EDGES_S));
        assert_eq!(enc["periodicity_edges"], serde_json::json!(PERIODICITY_EDGES));
        let gaps: Vec<(f64, String)> = GAP_SYMBOLS
            .iter()
            .map(|&(b, s)| (b, char::from(s).to_string()))
            .collect();
        assert_eq!(enc["gap_symbols"], serde_json::json!(gaps));
        assert_eq!(enc["hour_s"], serde_json::json!(HOUR_S));
        assert_eq!(enc["max_hour_zeros"], serde_json::json!(MAX_HOUR_ZEROS));
        for (p, row) in LETTERS.iter().enumerate() {
            assert_eq!(enc["letters"][p.to_string()], std::str::from_utf8(*row).unwrap());
        }
        for c in ALPHABET.bytes() {
            let want = alphabet_index(c).unwrap();
            assert_eq!(enc["index"][char::from(c).to_string()], want);
        }
    }

    #[test]
    fn size_edges() {
        assert_eq!(
            [0, 250, 251, 1100, 1101, u64::MAX].map(size_class),
            [1, 1, 2, 2, 3, 3]
        );
    }

    #[test]
    fn duration_edges() {
        let d = [0.0, 0.1, next_up(0.1), 10.0, next_up(10.0), 1e9];
        assert_eq!(d.map(duration_class), [1, 1, 2, 2, 3, 3]);
    }

    #[test]
    fn periodicity_edges() {
        let p = |t1, t2| periodicity_class(Some(t1), Some(t2));
        assert_eq!(periodicity_class(None, Some(1.0)), 0);
        assert_eq!(periodicity_class(Some(1.0), None), 0);
        assert_eq!(
            [p(2.0, 2.0), p(1.0, 1.05), p(1.05, 1.0), p(1.0, next_up(1.05))],
            [1, 1, 1, 2]
        );
        assert_eq!(
            [p(1.0, 1.3), p(1.0, next_up(1.3)), p(1.0, 5.0), p(5.0, 1.0)],
            [2, 3, 3, 3]
        );
        assert_eq!([p(1.0, next_up(5.0)), p(1.0, 1e6)], [4, 4]);
        // the smaller gap is zero: periodic, as in the data set's encoder
        assert_eq!([p(0.0, 7.0), p(7.0, 0.0), p(0.0, 0.0)], [1, 1, 1]);
    }

    #[test]
    fn gap_edges_and_zeros() {
        let g = |t| gap_symbol(Some(t)).map(char::from);
        assert_eq!(gap_symbol(None), None);
        assert_eq!(
            [g(0.0), g(5.0), g(next_up(5.0)), g(60.0)],
            [Some('.'), Some('.'), Some(','), Some(',')]
        );
        assert_eq!(
            [g(next_up(60.0)), g(300.0), g(next_up(300.0))],
            [Some('+'), Some('+'), Some('*')]
        );
        assert_eq!([g(3600.0), g(next_up(3600.0))], [Some('*'), None]);
        assert_eq!(hour_zeros(3599.999), 0);
        assert_eq!(
            [hour_zeros(3600.0), hour_zeros(7199.9), hour_zeros(7200.0)],
            [1, 1, 2]
        );
        assert_eq!(
            [hour_zeros(3600.0 * 1000.0), hour_zeros(f64::MAX)],
            [MAX_HOUR_ZEROS; 2]
        );
    }

    #[test]
    fn letter_table() {
        let all: String = (0..5)
            .flat_map(|p| (1..=3).flat_map(move |s| (1..=3).map(move |d| char::from(letter(p, s, d)))))
            .collect();
        assert_eq!(all, "123456789abcdefghiABCDEFGHIrstuvwxyzRSTUVWXYZ");
        assert_eq!(char::from(letter(1, 3, 1)), 'g');
        assert_eq!(char::from(letter(4, 3, 3)), 'Z');
        assert_eq!(ALPHABET.len(), 50);
        assert_eq!(alphabet_index(b'1'), Some(1));
        assert_eq!(alphabet_index(b'0'), Some(50));
        assert_eq!(alphabet_index(b'!'), None);
    }

    #[test]
    fn a_channel_reads_as_the_data_set_does() {
        // 1 flow, then 1 s, then 1 s (periodic), then 2 h (zeros, no gap symbol)
        let flows = [
            flow(100.0, 1.0, 300),
            flow(101.0, 1.0, 300),
            flow(102.0, 1.0, 300),
            flow(7302.0, 20.0, 5000),
        ];
        assert_eq!(encode(&flows).unwrap(), "55.e.00Z");
        // the second flow gets no zeros even after hours; its gap symbol is empty
        let late = [flow(0.0, 0.0, 10), flow(7300.0, 0.0, 10)];
        assert_eq!(encode(&late).unwrap(), "11");
        // order does not matter to `encode`
        let mut shuffled = flows;
        shuffled.swap(0, 3);
        assert_eq!(encode(&shuffled).unwrap(), "55.e.00Z");
    }

    #[test]
    fn an_earlier_start_is_a_zero_gap() {
        let mut enc = ChannelEncoder::new();
        let s: Vec<String> = [flow(10.0, 0.0, 1), flow(30.0, 0.0, 1), flow(20.0, 0.0, 1)]
            .iter()
            .map(|f| enc.push(f).unwrap().to_string())
            .collect();
        // third flow: T1 = 20, T2 = 0 (clamped): periodic by the zero rule, gap '.'
        assert_eq!(s, ["1", "1,", "a."]);
    }

    #[test]
    fn bad_flows_are_errors_and_change_nothing() {
        let mut enc = ChannelEncoder::new();
        enc.push(&flow(1.0, 0.0, 1)).unwrap();
        assert!(matches!(
            enc.push(&flow(f64::NAN, 0.0, 1)),
            Err(LetterError::BadStart(_))
        ));
        assert!(matches!(
            enc.push(&flow(f64::INFINITY, 0.0, 1)),
            Err(LetterError::BadStart(_))
        ));
        assert!(matches!(
            enc.push(&flow(2.0, -1.0, 1)),
            Err(LetterError::BadDuration(_))
        ));
        assert!(matches!(
            enc.push(&flow(2.0, f64::NAN, 1)),
            Err(LetterError::BadDuration(_))
        ));
        assert_eq!(enc.flows(), 1);
        assert_eq!(enc.push(&flow(2.0, 0.0, 1)).unwrap().to_string(), "1.");
        assert!(encode(&[flow(0.0, f64::NAN, 1)]).is_err());
    }

    #[test]
    fn window_keeps_whole_recent_symbols() {
        let sym = |zeros, letter, gap| Symbol { zeros, letter, gap };
        let mut w = SymbolWindow::new(5);
        assert!(w.is_empty());
        for s in [
            sym(0, b'2', None),
            sym(0, b'2', Some(b'.')),
            sym(0, b'a', Some(b'.')),
        ] {
            w.push(s);
        }
        assert_eq!(w.text(), "22.a."); // 5 characters: fits
        w.push(sym(0, b'a', Some(b'.')));
        assert_eq!(w.text(), "a.a.");
        w.push(sym(7, b'R', None)); // longer than the window alone: its last 5 characters
        assert_eq!((w.text(), w.len()), ("0000R".to_string(), 5));
        w.push(sym(0, b'b', Some(b',')));
        assert_eq!(w.text(), "b,");
        let mut idx = Vec::new();
        w.indices_into(&mut idx);
        assert_eq!(idx, vec![11, 47]);
    }
}
