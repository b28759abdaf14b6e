//! Blocks and rate limits announced upstream over BGP (issue 17), end to end: the agent on
//! the gateway of the [`Gateway`] lab announces through a real gobgpd beside it, and a real
//! BIRD 2 in an upstream namespace is the router that learns the routes ([`netanom_lab::bgp`]).
//!
//! - **RTBH:** a scanner blocked by the agent is in BIRD's table within 2 s, a /32 with the
//!   BLACKHOLE community 65535:666, the configured community and next hop (which BIRD resolves
//!   to its discard route); withdrawn when the block's TTL ends.
//! - **FlowSpec:** the replay of the real spoofed SYN flood (`pkt.TCP.synflood.spoofed.pcap`
//!   from `../shared/datasets/pcaps`; skipped with a message without it) puts the victim's
//!   pattern in BIRD's flow4 table with a traffic-rate.
//! - **Never announced:** an allowlisted source (neither the agent's detection nor an
//!   operator's block of it), the gateway's own address, and nothing at all in observe mode
//!   (a switch to it by SIGHUP withdraws what was announced).
//! - **Restarts:** gobgpd restarted gets everything back; the agent stopped leaves its routes
//!   (the blocks stay in force), and started again leaves exactly the active ones (a block
//!   removed meanwhile is withdrawn, one added is announced); `netanom status` lists them.
//! - **Bad input:** a speaker that is unreachable, then refuses (gobgpd without BGP), is logged
//!   once per change of state and counted; local mitigation goes on; once it peers, the block
//!   in force is announced.
use std::{
    path::PathBuf,
    sync::Mutex,
    time::{Duration, Instant},
};

use netanom_lab::{
    Agent, Gateway, Pace, RawSender, StateDirs,
    agent::{netanom_in, status_json},
    bgp::{API, DISCARD_V4, DISCARD_V6, GoBgpd, Upstream},
    http::http_get,
    replay::{self, ReplayOptions},
    require_root, start_agent, sweep_leftovers, sweep_state_leftovers, time_to_block, traffic, wait_until,
};

/// The scenarios share two cores: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Where the agent serves its metrics, in the gateway's namespace.
const METRICS_PORT: u16 = 9754;
/// The community configured besides BLACKHOLE.
const COMMUNITY: &str = "64512:100";

struct Lab {
    gw: Gateway,
    up: Upstream,
    dirs: StateDirs,
    config: PathBuf,
}

/// The gateway lab with BIRD upstream, and the agent's directories and configuration file.
fn lab(tag: &str) -> Option<Lab> {
    if !require_root() {
        eprintln!("skipped: needs root (namespaces, XDP, bpffs)");
        return None;
    }
    sweep_leftovers().unwrap();
    sweep_state_leftovers();
    let gw = Gateway::new(tag).unwrap();
    let up = Upstream::new(&gw.gw, tag).unwrap();
    gw.settle().unwrap();
    let dirs = StateDirs::new(tag);
    std::fs::create_dir_all(&dirs.state_dir).unwrap();
    let config = dirs.state_dir.join("netanom.toml");
    Some(Lab { gw, up, dirs, config })
}

impl Lab {
    /// Writes the agent's configuration: `[bgp]` on, through `speaker`, in `mode`, blocks
    /// lasting `ttl` seconds.
    fn configure(&self, mode: &str, speaker: &str, ttl: f64) {
        let text = format!(
            "[agent]\nmode = \"{mode}\"\n\
             [mitigation]\nblock_ttl = {ttl:.1}\n\
             [allowlist]\nprefixes = [\"198.18.2.77/32\"]\n\
             [bgp]\nenabled = true\nspeaker = \"{speaker}\"\nnext_hop_v4 = \"{DISCARD_V4}\"\n\
             next_hop_v6 = \"{DISCARD_V6}\"\ncommunities = [\"{COMMUNITY}\"]\n"
        );
        std::fs::write(&self.config, text).unwrap();
    }

    fn agent(&self) -> Agent {
        let config = self.config.to_str().unwrap();
        let metrics = format!("127.0.0.1:{METRICS_PORT}");
        start_agent(
            &self.gw,
            &self.dirs,
            &["--config", config, "--metrics-addr", &metrics],
        )
    }

    fn netanom(&self, args: &[&str]) -> String {
        let mut all = args.to_vec();
        all.extend(["--pin-dir", self.dirs.pin()]);
        let (code, out, err) = netanom_in(&self.gw, &all);
        assert_eq!(code, Some(0), "netanom {args:?}: {err}");
        out
    }

    /// A port scan of the server from the attacker's alias 198.18.2.`last`.
    fn scan(&self, last: u8) {
        let tx = RawSender::open(&self.gw.attacker, &self.gw.attacker_link.host.iface).unwrap();
        let src = self.gw.attacker_alias(last).unwrap();
        let dst = self.gw.to_server(&self.gw.attacker_link);
        let pace = Pace::rate(3_000, Duration::from_secs(3));
        traffic::port_sweep(&tx, &src, &dst, false, 1..=6000, &pace).unwrap();
    }

    /// The blackhole routes BIRD learnt (IPv4 and IPv6).
    /// The blackhole routes (with 65535:666) BIRD learnt, IPv4 then IPv6.
    fn blackholes(&self) -> Vec<String> {
        let mut routes = self.up.learnt("master4");
        routes.extend(self.up.learnt("master6"));
        routes
            .into_iter()
            .filter(|(_, attrs)| attrs.contains("(65535,666)"))
            .map(|(line, _)| line.split_whitespace().next().unwrap_or_default().to_owned())
            .collect()
    }

    /// Waits (at most `limit`) until the blackholes BIRD learnt are exactly `want`.
    fn wait_blackholes(&self, want: &[&str], limit: Duration) -> Result<Duration, String> {
        let t0 = Instant::now();
        wait_until(limit, || (self.blackholes() == want).then(|| t0.elapsed())).ok_or_else(|| {
            format!(
                "BIRD's blackholes are {:?}, not {want:?}, after {limit:?}; routes: {} {}",
                self.blackholes(),
                self.up.routes("master4"),
                self.up.routes("master6")
            )
        })
    }

    /// Waits (at most 3 s: the metrics are refreshed every second) until `series` is `value`.
    fn wait_sample(&self, series: &str, value: f64) {
        let got = wait_until(Duration::from_secs(3), || {
            (sample(&self.metrics(), series) == Some(value)).then_some(())
        });
        assert!(got.is_some(), "{series} is not {value}: {}", self.metrics());
    }

    fn metrics(&self) -> String {
        http_get(&self.gw.gw, METRICS_PORT, "/metrics", None)
            .map(|(_, _, body)| body)
            .unwrap_or_default()
    }
}

/// The value of the sample `series` (name and labels, as written) in a metrics text.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

fn wait_established(up: &Upstream) {
    let ok = wait_until(Duration::from_secs(10), || up.established().then_some(()));
    assert!(ok.is_some(), "BIRD did not establish the session: {}", up.log());
}

/// Replays (a prefix of) the real spoofed SYN flood at the server; `None` without the capture.
fn syn_flood_replay(gw: &Gateway) -> Option<u64> {
    let Some(capture) = netanom_lab::pcap_path("attacks/ddos-stopddos/pkt.TCP.synflood.spoofed.pcap") else {
        eprintln!("the shared captures were not found (set NETANOM_SHARED): the FlowSpec replay is skipped");
        return None;
    };
    let tx = RawSender::open(&gw.attacker, &gw.attacker_link.host.iface).unwrap();
    let opts = ReplayOptions {
        pace: Pace::rate(8_000, Duration::from_secs(4)),
        max_packets: Some(30_000),
        original_timing: false,
        speedup: 1.0,
    };
    let dst = gw.to_server(&gw.attacker_link);
    let stats = replay::replay(&capture, &tx, &gw.attacker_link.host.ep, &dst, &opts).unwrap();
    Some(stats.sent)
}

/// A scanner is blocked, and its /32 is in BIRD's table within 2 s, with BLACKHOLE and the
/// configured community, to the discard next hop.
fn rtbh(lab: &Lab) {
    let blocked = time_to_block(&lab.gw, &lab.dirs, "198.18.2.66/32", || lab.scan(66));
    assert!(blocked.is_some(), "the scanner was not blocked");
    let t = lab
        .wait_blackholes(&["198.18.2.66/32"], Duration::from_secs(2))
        .unwrap();
    eprintln!("blocked after {blocked:?}, in BIRD {t:?} later");
    let (line, attrs) = lab
        .up
        .learnt("master4")
        .into_iter()
        .find(|(l, _)| l.starts_with("198.18.2.66/32 "))
        .unwrap();
    assert!(
        line.contains("blackhole"),
        "not resolved to the discard route: {line}"
    );
    assert!(
        attrs.contains("BGP.community: (64512,100) (65535,666)"),
        "{attrs}"
    );
    assert!(attrs.contains(&format!("BGP.next_hop: {DISCARD_V4}")), "{attrs}");
}

/// Never announced: an allowlisted scanner (not blocked either), the allowlisted address, the
/// gateway's own one and the BGP peer blocked by hand; an IPv6 block by hand is announced.
/// Returns the blackholes then wanted.
fn never_announced(lab: &Lab) -> [&'static str; 2] {
    lab.scan(77);
    lab.netanom(&["block", "add", "198.18.2.77"]);
    lab.netanom(&["block", "add", "198.18.3.1", "--force"]);
    // Blackholing the peer would cut the session.
    lab.netanom(&["block", "add", &lab.up.link.host.ep.ipv4.to_string()]);
    lab.netanom(&["block", "add", "2001:db8:2::88"]);
    let want = ["198.18.2.66/32", "2001:db8:2::88/128"];
    lab.wait_blackholes(&want, Duration::from_secs(3)).unwrap();
    // The allowlist holds the gateway's own addresses too.
    lab.wait_sample("netanom_bgp_routes_excluded{reason=\"allowlisted\"}", 2.0);
    lab.wait_sample("netanom_bgp_routes_excluded{reason=\"protected\"}", 1.0);
    want
}

/// The replayed SYN flood's pattern in BIRD's flow4 table, with its traffic-rate. Returns the
/// FlowSpec rules BIRD holds.
fn flowspec(lab: &Lab) -> Vec<String> {
    if let Some(sent) = syn_flood_replay(&lab.gw) {
        let flow = wait_until(Duration::from_secs(3), || lab.up.learnt("flowtab4").pop());
        let (rule, attrs) = flow.unwrap_or_else(|| {
            panic!(
                "no FlowSpec rule after {sent} frames: {}",
                lab.up.routes("flowtab4")
            )
        });
        eprintln!("FlowSpec in BIRD: {rule}");
        assert!(rule.contains("dst 198.18.3.2/32; proto 6; dport "), "{rule}");
        assert!(rule.contains("tcp flags 0x2/0x2 && 0x0/0x15"), "{rule}");
        // traffic-rate-bytes: 1000 packets/s × 1500 bytes.
        assert!(attrs.contains("(generic, 0x80060000, 0x49b71b00)"), "{attrs}");
    }
    lab.up.learnt_networks("flowtab4")
}

/// `netanom status` lists `route` and `others` more (the status file is rewritten every second).
fn status_lists(lab: &Lab, route: &str, others: usize) {
    let routes = |s: &serde_json::Value| -> Vec<String> {
        s["bgp"]["announced"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|r| r["route"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let listed = wait_until(Duration::from_secs(3), || {
        let s = status_json(&lab.gw, &lab.dirs);
        let r = routes(&s);
        (s["bgp"]["state"] == "up" && r.len() == 1 + others && r.iter().any(|x| x == route)).then_some(())
    });
    assert!(listed.is_some(), "{}", status_json(&lab.gw, &lab.dirs));
    let text = lab.netanom(&["status", "--state-dir", lab.dirs.state()]);
    let line = format!("blackhole {route} next hop {DISCARD_V4} communities {COMMUNITY} 65535:666");
    assert!(text.contains(&line), "{text}");
}

#[test]
fn blocks_and_rate_limits_reach_the_upstream_router_and_survive_restarts() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(lab) = lab("bgp") else {
        return;
    };
    let mut speaker = GoBgpd::start(&lab.gw.gw, Some(&lab.up), "bgp").unwrap();
    wait_established(&lab.up);
    // Before the agent: a blackhole left by an earlier run (its block is gone), and a route of
    // someone else's (no 65535:666), which netanom must leave alone.
    let ns = &lab.gw.gw;
    let stale = [
        "global",
        "rib",
        "add",
        "-a",
        "ipv4",
        "198.18.2.99/32",
        "nexthop",
        DISCARD_V4,
    ];
    speaker
        .cli(ns, &[&stale[..], &["community", "65535:666"]].concat())
        .unwrap();
    let foreign = [
        "global",
        "rib",
        "add",
        "-a",
        "ipv4",
        "198.18.9.0/24",
        "nexthop",
        DISCARD_V4,
    ];
    speaker.cli(ns, &foreign).unwrap();
    lab.wait_blackholes(&["198.18.2.99/32"], Duration::from_secs(3))
        .unwrap();
    lab.configure("mitigate", API, 6.0);
    let agent = lab.agent();
    lab.wait_blackholes(&[], Duration::from_secs(3)).unwrap();
    rtbh(&lab);
    let want = never_announced(&lab);
    // The scanner's block ends (block_ttl 6 s): withdrawn.
    let t = lab.wait_blackholes(&want[1..], Duration::from_secs(9)).unwrap();
    eprintln!("withdrawn {t:?} after the allowlist checks");
    let flows = flowspec(&lab);

    assert!(
        lab.up
            .learnt_networks("master4")
            .contains(&"198.18.9.0/24".to_owned()),
        "the foreign route was withdrawn: {}",
        lab.up.routes("master4")
    );

    // gobgpd restarts empty (the foreign route gone with it): netanom's are all back.
    speaker.restart(&lab.gw.gw).unwrap();
    wait_established(&lab.up);
    lab.wait_blackholes(&want[1..], Duration::from_secs(5)).unwrap();
    assert_eq!(lab.up.learnt_networks("flowtab4"), flows);

    // The agent stops: its routes stay while the blocks are in force. Meanwhile a block goes
    // and one comes; the next agent leaves exactly the active routes.
    let (code, _, _) = agent.stop(libc::SIGTERM);
    assert_eq!(code, Some(0));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(lab.blackholes(), want[1..]);
    lab.netanom(&["block", "del", "2001:db8:2::88/128"]);
    lab.netanom(&["block", "add", "198.18.2.89"]);
    let agent = lab.agent();
    lab.wait_blackholes(&["198.18.2.89/32"], Duration::from_secs(5))
        .unwrap();
    assert_eq!(lab.up.learnt_networks("flowtab4"), flows);
    status_lists(&lab, "198.18.2.89/32", flows.len());
    drop(agent);
    speaker.stop();
}

/// How many of `lines` contain `needle`.
fn count(lines: &[String], needle: &str) -> usize {
    lines.iter().filter(|l| l.contains(needle)).count()
}

/// Lines of the agent's stderr so far (waiting a moment for them).
fn stderr(agent: &mut Agent, needle: &str) -> Vec<String> {
    let _ = agent.wait_for_stderr(needle, Duration::from_secs(3));
    agent.stderr_seen.clone()
}

#[test]
fn bad_speakers_are_logged_once_and_observe_mode_announces_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(lab) = lab("bgpbad") else {
        return;
    };
    lab.configure("mitigate", API, 60.0);
    // Nobody serves the API yet.
    let mut agent = lab.agent();
    let t = time_to_block(&lab.gw, &lab.dirs, "198.18.2.66/32", || lab.scan(66));
    assert!(
        t.is_some_and(|t| t < Duration::from_secs(2)),
        "local mitigation goes on: {t:?}"
    );
    let lines = stderr(&mut agent, "cannot reach the BGP speaker's API");
    assert_eq!(
        count(&lines, "cannot reach the BGP speaker's API"),
        1,
        "{lines:?}"
    );
    let m = lab.metrics();
    assert!(
        sample(&m, "netanom_bgp_speaker_errors_total{reason=\"unreachable\"}") >= Some(2.0),
        "{m}"
    );
    assert_eq!(sample(&m, "netanom_bgp_speaker_up"), Some(0.0));

    // gobgpd without BGP: it answers, and refuses the routes.
    let mut speaker = GoBgpd::start(&lab.gw.gw, None, "bgpbad").unwrap();
    let lines = stderr(&mut agent, "refused to");
    assert_eq!(count(&lines, "refused to"), 1, "{lines:?}");
    std::thread::sleep(Duration::from_secs(2));
    let lines = stderr(&mut agent, "never printed");
    assert_eq!(count(&lines, "refused to"), 1, "logged once: {lines:?}");
    assert_eq!(
        count(&lines, "cannot reach the BGP speaker's API"),
        1,
        "{lines:?}"
    );
    let s = status_json(&lab.gw, &lab.dirs);
    assert_eq!(s["bgp"]["state"], "refused", "{s}");
    for l in lines.iter().filter(|l| l.contains("BGP")) {
        eprintln!("agent: {l}");
    }

    // Peering: the block in force is announced.
    speaker.set_peering(Some(&lab.up)).unwrap();
    speaker.restart(&lab.gw.gw).unwrap();
    wait_established(&lab.up);
    lab.wait_blackholes(&["198.18.2.66/32"], Duration::from_secs(4))
        .unwrap();
    let lines = stderr(&mut agent, "answers; it announces");
    assert_eq!(count(&lines, "answers; it announces"), 1, "{lines:?}");

    // Observe mode (SIGHUP): what was announced is withdrawn; nothing new is announced.
    lab.configure("observe", API, 60.0);
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(agent.child.id() as i32, libc::SIGHUP) };
    lab.wait_blackholes(&[], Duration::from_secs(4)).unwrap();
    lab.scan(67);
    lab.netanom(&["block", "add", "198.18.2.90"]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(lab.blackholes(), Vec::<String>::new());
    let s = status_json(&lab.gw, &lab.dirs);
    assert_eq!(
        (
            s["bgp"]["state"].as_str(),
            s["bgp"]["announced"].as_array().map(Vec::len)
        ),
        (Some("up"), Some(0)),
        "{s}"
    );
    drop(agent);
    speaker.stop();
}

/// The example gobgpd configuration (deploy/gobgpd.toml) is one gobgpd accepts, with the four
/// families netanom announces in.
#[test]
fn the_example_gobgpd_configuration_is_valid() {
    let Some(gobgpd) = netanom_lab::servers::tool("gobgpd") else {
        eprintln!("skipped: gobgpd not installed (cargo xtask setup)");
        return;
    };
    let file = netanom_lab::deploy::repo_file("deploy/gobgpd.toml");
    let out = std::process::Command::new(gobgpd)
        .arg("--dry-run")
        .arg("-f")
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let text = std::fs::read_to_string(&file).unwrap();
    for family in ["ipv4-unicast", "ipv6-unicast", "ipv4-flowspec", "ipv6-flowspec"] {
        assert!(
            text.contains(&format!("afi-safi-name = \"{family}\"")),
            "{family}"
        );
    }
    assert!(text.contains("--api-hosts=127.0.0.1:50051"));
}
