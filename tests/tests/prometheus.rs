//! The agent's Prometheus endpoint, end to end: the exposition passes `promtool check metrics`,
//! and a real Prometheus server (Debian's `prometheus` package, installed by `cargo xtask
//! setup`) scraping the agent in the lab reports exactly the packets that were sent.
//!
//! Everything runs inside the lab's namespace a and talks only to 127.0.0.1 there.

use std::{
    fs,
    io::Write as _,
    net::TcpListener,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use netanom_lab::{
    Agent, Pace, Pair, RawSender, StateDirs, TempDir,
    agent::{block_of, netanom_in, xdp_attached},
    agent_bin, frames,
    http::{http_get, sample},
    probes::attacker,
    prometheus::{query, start_prometheus},
    require_root, run_to_end,
    servers::tool,
    sweep_leftovers, sweep_state_leftovers, traffic, wait_until,
};

/// UDP datagrams sent from b to a.
const N: u64 = 137;
const PAYLOAD: usize = 48;
const METRICS_PORT: u16 = 19754;
const PROMETHEUS_PORT: u16 = 19090;

/// Runs `promtool check metrics` on `text`; panics with its report unless it is clean.
fn promtool_check(promtool: &Path, text: &str) {
    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = check.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics: {report}"
    );
}

#[test]
fn promtool_accepts_and_prometheus_scrapes_exact_counts() {
    if !require_root() {
        eprintln!("skipped: needs root (namespaces, XDP)");
        return;
    }
    let (Some(promtool), Some(prometheus)) = (tool("promtool"), tool("prometheus")) else {
        eprintln!(
            "skipped: promtool or prometheus not installed (Debian package `prometheus`; \
             `cargo xtask setup` installs it)"
        );
        return;
    };
    sweep_leftovers().unwrap();
    let lab = Pair::new("prom").unwrap();
    let iface = lab.a_side.iface.clone();
    let metrics_addr = format!("127.0.0.1:{METRICS_PORT}");
    let agent = Agent::start(
        &lab.a,
        &[
            "--iface",
            &iface,
            "--no-egress",
            "--metrics-addr",
            &metrics_addr,
            "--stats-interval",
            "60",
            // The one UDP flow ends (idle) a second after the burst, and is scored.
            "--idle-timeout",
            "1",
        ],
    )
    .unwrap();
    // Logged before "ready", so already collected.
    let serving = format!("serving Prometheus metrics at http://{metrics_addr}/metrics");
    assert!(
        agent.stderr_seen.iter().any(|l| l.contains(&serving)),
        "{:?}",
        agent.stderr_seen
    );

    let (src, dst) = (lab.b_side.ep, lab.a_side.ep);
    let tx = RawSender::open(&lab.b, &lab.b_side.iface).unwrap();
    let pace = Pace {
        pps: Some(20_000),
        max_duration: Duration::from_secs(10),
    };
    assert_eq!(
        traffic::udp_burst(&tx, &src, &dst, false, N, PAYLOAD, &pace).unwrap(),
        N
    );
    let frame_len = frames::udp(&src, &dst, false, 1, 2, &[0; PAYLOAD]).len() as u64;

    // (a) The classic text exposition: the counts arrive within a refresh or two, the flow
    // is exported and scored after its idle timeout, and promtool finds nothing to complain
    // about.
    let udp = r#"netanom_packets_total{family="ipv4",transport="udp"}"#;
    let mut last = String::new();
    let text = wait_until(Duration::from_secs(15), || {
        let (status, head, body) = http_get(&lab.a, METRICS_PORT, "/metrics", None).ok()?;
        assert_eq!(status, 200, "{head}");
        assert!(head.contains("Content-Type: text/plain; version=0.0.4"), "{head}");
        let done = sample(&body, udp) == Some(N as f64)
            && sample(&body, "netanom_vectors_scored_total") == Some(1.0);
        last = body;
        done.then(|| last.clone())
    })
    .unwrap_or_else(|| panic!("{udp} never reached {N}, or the flow was not scored:\n{last}"));
    assert_eq!(
        sample(&text, r#"netanom_bytes_total{family="ipv4",transport="udp"}"#),
        Some((N * frame_len) as f64)
    );
    for (series, v) in [
        ("netanom_flows_created_total", 1.0),
        (r#"netanom_flows_exported_total{path="idle"}"#, 1.0),
        ("netanom_flows_evicted_total", 0.0),
        ("netanom_flows_export_lost_total", 0.0),
        ("netanom_vectors_rejected_total", 0.0),
        ("netanom_scoring_duration_seconds_count", 1.0),
    ] {
        assert_eq!(sample(&text, series), Some(v), "{series}:\n{text}");
    }
    for needle in [
        &format!(r#"netanom_xdp_attached_info{{iface="{iface}","#),
        r#"egress="false"} 1"#,
        r#"netanom_model_bundle_info{origin="embedded","#,
        "netanom_build_info{version=",
        "netanom_flows_created_total ",
        r#"netanom_anomalies_total{model="ensemble"} "#,
        r#"netanom_drain_duration_seconds_bucket{le="+Inf",stage="sweep"} "#,
        "netanom_scoring_duration_seconds_count ",
    ] {
        assert!(text.contains(needle), "`{needle}` missing:\n{text}");
    }
    promtool_check(&promtool, &text);
    let excerpt: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("netanom_packets_total{family=\"ipv4\"") || l.contains("_info{"))
        .collect();
    eprintln!("scraped (excerpt):\n{}", excerpt.join("\n"));
    if let Some(path) = std::env::var_os("NETANOM_METRICS_DUMP") {
        fs::write(path, &text).unwrap();
    }

    // The OpenMetrics exposition for scrapers that ask for it; other paths and methods.
    let (status, head, body) = http_get(
        &lab.a,
        METRICS_PORT,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    )
    .unwrap();
    assert_eq!(status, 200);
    assert!(
        head.contains("Content-Type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    assert!(
        body.ends_with("# EOF\n") && body.contains("# TYPE netanom_build info"),
        "{body}"
    );
    assert_eq!(http_get(&lab.a, METRICS_PORT, "/", None).unwrap().0, 404);

    // (b) A real Prometheus server in the same namespace, scraping every second.
    let dir = TempDir::new("prometheus");
    let server = start_prometheus(&lab.a, &prometheus, &dir, &metrics_addr, PROMETHEUS_PORT, &[]);
    let mut seen = String::new();
    let got = wait_until(Duration::from_secs(60), || {
        match query(&lab.a, PROMETHEUS_PORT, udp) {
            Ok(Some(v)) if v == N as f64 => Some(v),
            other => {
                seen = format!("{other:?}");
                None
            }
        }
    });
    let prom_log = fs::read_to_string(dir.0.join("prometheus.log")).unwrap_or_default();
    assert_eq!(
        got,
        Some(N as f64),
        "Prometheus never reported {N} for {udp}; last answer {seen}; its log:\n{prom_log}"
    );
    assert_eq!(
        query(&lab.a, PROMETHEUS_PORT, r#"up{job="netanom"}"#).unwrap(),
        Some(1.0)
    );
    assert_eq!(
        query(
            &lab.a,
            PROMETHEUS_PORT,
            &format!(r#"netanom_xdp_attached_info{{iface="{iface}"}}"#)
        )
        .unwrap(),
        Some(1.0)
    );
    eprintln!("Prometheus reports {udp} = {N}");
    drop(server);
    drop(dir);

    let (code, _, stderr) = agent.stop(libc::SIGTERM);
    assert_eq!(code, Some(0), "clean exit: {stderr:?}");
    assert!(!xdp_attached(&lab.a, &iface));
}

/// Frames sent from a blocked source in the mitigation scenario.
const N_DROPPED: u64 = 73;

#[test]
fn prometheus_reports_blocklist_drops_and_active_blocks_in_mitigate_mode() {
    if !require_root() {
        eprintln!("skipped: needs root (namespaces, XDP, bpffs)");
        return;
    }
    let (Some(promtool), Some(prometheus)) = (tool("promtool"), tool("prometheus")) else {
        eprintln!("skipped: promtool or prometheus not installed (Debian package `prometheus`)");
        return;
    };
    sweep_leftovers().unwrap();
    sweep_state_leftovers();
    let lab = Pair::new("prommit").unwrap();
    let dirs = StateDirs::new("prommit");
    fs::create_dir_all(&dirs.state_dir).unwrap();
    let iface = lab.a_side.iface.clone();
    let metrics_addr = format!("127.0.0.1:{METRICS_PORT}");
    let agent = Agent::start(
        &lab.a,
        &[
            "--iface",
            &iface,
            "--no-egress",
            "--mode",
            "mitigate",
            "--pin-dir",
            dirs.pin(),
            "--state-dir",
            dirs.state(),
            "--metrics-addr",
            &metrics_addr,
            "--stats-interval",
            "60",
        ],
    )
    .unwrap();
    let (code, out, err) = netanom_in(
        &lab,
        &[
            "block",
            "add",
            "198.18.0.66",
            "--ttl",
            "600",
            "--pin-dir",
            dirs.pin(),
        ],
    );
    assert_eq!(code, Some(0), "{out}{err}");

    // Exactly N frames from the blocked source, nothing else on the wire.
    let bad = attacker(&lab, 66);
    let tx = RawSender::open(&lab.b, &lab.b_side.iface).unwrap();
    let pace = Pace::rate(5_000, Duration::from_secs(5));
    assert_eq!(
        traffic::udp_burst(&tx, &bad, &lab.a_side.ep, false, N_DROPPED, PAYLOAD, &pace).unwrap(),
        N_DROPPED
    );
    let entry = block_of(&lab, &dirs, "198.18.0.66/32", false).expect("block listed");
    assert_eq!(entry["dropped_packets"], N_DROPPED, "{entry}");

    // The exposition: the drops and the one active block, and promtool still agrees.
    let dropped = r#"netanom_packets_dropped_total{reason="blocklist"}"#;
    let mut last = String::new();
    let text = wait_until(Duration::from_secs(10), || {
        let (status, _, body) = http_get(&lab.a, METRICS_PORT, "/metrics", None).ok()?;
        assert_eq!(status, 200);
        let done = sample(&body, dropped) == Some(N_DROPPED as f64)
            && sample(&body, "netanom_blocks_active") == Some(1.0);
        last = body;
        done.then(|| last.clone())
    })
    .unwrap_or_else(|| panic!("{dropped} != {N_DROPPED} or netanom_blocks_active != 1:\n{last}"));
    for (series, v) in [
        (r#"netanom_packets_dropped_total{reason="rate_limit"}"#, 0.0),
        (
            r#"netanom_mode_info{configured="mitigate",effective="mitigate"}"#,
            1.0,
        ),
        ("netanom_circuit_breaker_open", 0.0),
        // A manual block is not one the agent added.
        ("netanom_blocks_added_total", 0.0),
    ] {
        assert_eq!(sample(&text, series), Some(v), "{series}:\n{text}");
    }
    promtool_check(&promtool, &text);

    // A real Prometheus server scraping the agent reports the same values.
    let dir = TempDir::new("prometheus-mitigation");
    let server = start_prometheus(&lab.a, &prometheus, &dir, &metrics_addr, PROMETHEUS_PORT, &[]);
    let mut seen = String::new();
    let got = wait_until(Duration::from_secs(60), || {
        let d = query(&lab.a, PROMETHEUS_PORT, dropped);
        let b = query(&lab.a, PROMETHEUS_PORT, "netanom_blocks_active");
        match (&d, &b) {
            (Ok(Some(d)), Ok(Some(b))) if *d == N_DROPPED as f64 && *b == 1.0 => Some(()),
            _ => {
                seen = format!("{dropped} = {d:?}, netanom_blocks_active = {b:?}");
                None
            }
        }
    });
    let prom_log = fs::read_to_string(dir.0.join("prometheus.log")).unwrap_or_default();
    assert!(
        got.is_some(),
        "Prometheus never reported {N_DROPPED} drops and 1 active block; last answer {seen}; its log:\n{prom_log}"
    );
    assert_eq!(
        query(
            &lab.a,
            PROMETHEUS_PORT,
            r#"netanom_mode_info{configured="mitigate",effective="mitigate"}"#
        )
        .unwrap(),
        Some(1.0)
    );
    eprintln!("Prometheus reports {dropped} = {N_DROPPED} and netanom_blocks_active = 1");
    drop(server);
    drop(dir);

    let (code, _, stderr) = agent.stop(libc::SIGTERM);
    assert_eq!(code, Some(0), "clean exit: {stderr:?}");
    assert!(!xdp_attached(&lab.a, &iface));
}

/// Asserts one `netanom: error:` paragraph containing every needle, exit code 1, and that
/// nothing was left attached.
fn assert_fails_before_attaching(lab: &Pair, args: &[&str], needles: &[&str]) {
    let mut c = lab.a.command(agent_bin());
    c.arg("run").args(args).env("RUST_BACKTRACE", "1");
    let (code, _, err) = run_to_end(c);
    assert_eq!(code, Some(1), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("netanom: error:")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    for n in needles {
        assert!(errors[0].contains(n), "`{n}` missing: {err}");
    }
    assert!(!err.contains("panicked") && !err.contains("attached to"), "{err}");
    assert!(!xdp_attached(&lab.a, &lab.a_side.iface));
}

#[test]
fn busy_port_or_foreign_address_fails_before_attaching() {
    if !require_root() {
        eprintln!("skipped: needs root (namespaces, XDP)");
        return;
    }
    sweep_leftovers().unwrap();
    let lab = Pair::new("prombind").unwrap();
    let iface = lab.a_side.iface.clone();
    // Something else already listens on the port, inside a.
    let squatter = lab
        .a
        .run(|| TcpListener::bind(("127.0.0.1", METRICS_PORT)))
        .unwrap()
        .unwrap();
    let addr = format!("127.0.0.1:{METRICS_PORT}");
    assert_fails_before_attaching(
        &lab,
        &["--iface", &iface, "--no-egress", "--metrics-addr", &addr],
        &[
            &format!("cannot serve Prometheus metrics on {addr}"),
            "ss -ltnp",
            "--metrics-addr",
            "--no-metrics",
        ],
    );
    drop(squatter);
    // An address this namespace does not have (TEST-NET-1).
    assert_fails_before_attaching(
        &lab,
        &[
            "--iface",
            &iface,
            "--no-egress",
            "--metrics-addr",
            "192.0.2.1:9754",
        ],
        &[
            "cannot serve Prometheus metrics on 192.0.2.1:9754",
            "not an address of this host",
        ],
    );
}
