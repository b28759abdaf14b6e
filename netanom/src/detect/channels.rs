//! Channels: the flows from one inside host to one remote host, remote port and protocol, each
//! kept as its behavioural letters ([`crate::letters`]) for the sequence model. Memory is
//! bounded twice: at most `max` channels (the least recently grown is dropped first) and at
//! most `max_len` characters of letters per channel (the newest whole symbols).
use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
};

use super::periodicity::Recent;
use crate::letters::{self, ChannelEncoder, SymbolWindow};

/// A channel: who starts the flows (the inside host), to whom.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelKey {
    /// The host that opens the flows (a beacon's infected machine).
    pub inside: IpAddr,
    /// The host it reaches (a beacon's command-and-control server).
    pub peer: IpAddr,
    pub port: u16,
    pub proto: u8,
}

/// One channel's letters and what detection noted about it.
#[derive(Clone, Debug)]
pub struct Channel {
    encoder: ChannelEncoder,
    window: SymbolWindow,
    /// The newest flows' starts and sizes, for the periodicity rule.
    recent: Recent,
    /// Start of the first flow and of the newest, nanoseconds (the flows' clock).
    pub first_ns: u64,
    pub last_ns: u64,
    /// Source port of the newest flow (the alert's).
    pub last_src_port: u16,
    /// Whether a beacon finding was made about it (made once).
    pub reported: bool,
    /// Flows when the model last scored it (0: never).
    scored_flows: u64,
    /// When it last grew, in [`Channels`] ticks (for dropping the least recently grown).
    touched: u64,
}

impl Channel {
    /// Flows encoded so far (the window may hold fewer).
    pub fn flows(&self) -> u64 {
        self.encoder.flows()
    }

    pub fn window(&self) -> &SymbolWindow {
        &self.window
    }

    pub fn recent(&self) -> &Recent {
        &self.recent
    }

    /// Whether the sequence model should score it again: never scored, or grown by at least
    /// an eighth (and one flow) since.
    pub fn due(&self) -> bool {
        let last = self.scored_flows;
        last == 0 || self.flows() >= last + (last / 8).max(1)
    }

    /// The model scored it now.
    pub fn scored(&mut self) {
        self.scored_flows = self.flows();
    }
}

/// The channels followed, at most `max`.
#[derive(Debug)]
pub struct Channels {
    map: HashMap<ChannelKey, Channel>,
    /// (channel, tick of the growth): oldest first; an entry whose tick is not its channel's
    /// current one is stale and skipped.
    order: VecDeque<(ChannelKey, u64)>,
    tick: u64,
    max: usize,
    max_len: usize,
    /// Channels dropped to make room, since the start.
    pub dropped: u64,
}

impl Channels {
    /// At most `max` channels (at least 1) of at most `max_len` characters each.
    pub fn new(max: usize, max_len: usize) -> Channels {
        Channels {
            map: HashMap::new(),
            order: VecDeque::new(),
            tick: 0,
            max: max.max(1),
            max_len: max_len.max(1),
            dropped: 0,
        }
    }

    /// Changes the bounds; channels over the new count are dropped, oldest first.
    pub fn set_bounds(&mut self, max: usize, max_len: usize) {
        self.max = max.max(1);
        if max_len.max(1) != self.max_len {
            // Windows of another length would not be what the model was given: start over.
            self.map.clear();
            self.order.clear();
            self.max_len = max_len.max(1);
        }
        while self.map.len() > self.max {
            self.drop_oldest();
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn get(&self, key: &ChannelKey) -> Option<&Channel> {
        self.map.get(key)
    }

    pub fn get_mut(&mut self, key: &ChannelKey) -> Option<&mut Channel> {
        self.map.get_mut(key)
    }

    /// Adds one flow (started at `start_ns`) to `key`'s channel, making room if it is new.
    /// A flow the encoding refuses (a non-finite time) is ignored.
    pub fn push(&mut self, key: ChannelKey, flow: &letters::Flow, start_ns: u64, src_port: u16) {
        if !self.map.contains_key(&key) && self.map.len() >= self.max {
            self.drop_oldest();
        }
        self.tick += 1;
        let max_len = self.max_len;
        let c = self.map.entry(key).or_insert_with(|| Channel {
            encoder: ChannelEncoder::new(),
            window: SymbolWindow::new(max_len),
            recent: Recent::default(),
            first_ns: start_ns,
            last_ns: start_ns,
            last_src_port: src_port,
            reported: false,
            scored_flows: 0,
            touched: 0,
        });
        let Ok(sym) = c.encoder.push(flow) else {
            return;
        };
        c.window.push(sym);
        c.recent.push(start_ns, flow.bytes);
        c.last_ns = c.last_ns.max(start_ns);
        c.last_src_port = src_port;
        c.touched = self.tick;
        self.order.push_back((key, self.tick));
        if self.order.len() > 2 * self.max + 64 {
            self.compact();
        }
    }

    /// Drops the least recently grown channel.
    fn drop_oldest(&mut self) {
        while let Some((key, tick)) = self.order.pop_front() {
            if self.map.get(&key).is_some_and(|c| c.touched == tick) {
                self.map.remove(&key);
                self.dropped += 1;
                return;
            }
        }
    }

    /// Rebuilds the order from the live channels (stale entries gone).
    fn compact(&mut self) {
        let mut live: Vec<(ChannelKey, u64)> = self.map.iter().map(|(k, c)| (*k, c.touched)).collect();
        live.sort_by_key(|(_, t)| *t);
        self.order = live.into();
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn key(i: u8) -> ChannelKey {
        ChannelKey {
            inside: IpAddr::V4(Ipv4Addr::new(198, 18, 0, i)),
            peer: IpAddr::V4(Ipv4Addr::new(198, 18, 1, 1)),
            port: 443,
            proto: 6,
        }
    }

    fn flow(start: f64) -> letters::Flow {
        letters::Flow {
            start,
            duration: 0.05,
            bytes: 900,
        }
    }

    #[test]
    fn the_least_recently_grown_channel_is_dropped_first() {
        let mut c = Channels::new(2, 50);
        c.push(key(1), &flow(0.0), 0, 1);
        c.push(key(2), &flow(1.0), 1, 1);
        c.push(key(1), &flow(2.0), 2, 1); // 1 grows again: 2 is now the oldest
        c.push(key(3), &flow(3.0), 3, 1);
        assert_eq!(c.len(), 2);
        assert!(c.get(&key(1)).is_some() && c.get(&key(3)).is_some());
        assert!(c.get(&key(2)).is_none());
        assert_eq!(c.dropped, 1);
        assert_eq!(c.get(&key(1)).map(Channel::flows), Some(2));
    }

    #[test]
    fn memory_stays_bounded_under_many_channels_and_long_ones() {
        let mut c = Channels::new(100, 20);
        for i in 0..10_000u32 {
            let k = ChannelKey {
                port: (i % 500) as u16,
                ..key((i % 200) as u8)
            };
            c.push(k, &flow(f64::from(i)), u64::from(i), 1);
        }
        assert_eq!(c.len(), 100);
        assert!(c.order.len() <= 2 * 100 + 64);
        for i in 0..1000 {
            c.push(key(7), &flow(20_000.0 + f64::from(i) * 2.0), 0, 1);
        }
        let ch = c.get(&key(7)).expect("kept: it grew last");
        assert_eq!(ch.flows(), 1000);
        assert!(ch.window().len() <= 20, "window {}", ch.window().len());
    }

    #[test]
    fn a_flow_with_a_bad_time_is_ignored() {
        let mut c = Channels::new(4, 50);
        c.push(key(1), &flow(f64::NAN), 0, 1);
        assert_eq!(c.get(&key(1)).map(Channel::flows), Some(0));
        c.push(key(1), &flow(1.0), 1, 1);
        assert_eq!(c.get(&key(1)).map(Channel::flows), Some(1));
    }
}
