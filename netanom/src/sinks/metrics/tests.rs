//! Tests of the metrics: values, formats, the README, promtool, the HTTP endpoint.
use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::oneshot,
};

use netanom_common::{Event, Proto, ProtoCounter};

use super::{exposition::*, server::*, *};
use crate::{
    detect::Kind,
    telemetry::{
        BundleInfo, InterfaceInfo, QueueCounters, ResponseTotals, ScoreCounters, Snapshot, SweepTotals,
        counters::FINDING_KINDS,
    },
};

fn snapshot(udp_packets: u64) -> Snapshot {
    let protos: Vec<(Proto, ProtoCounter)> = Proto::ALL
        .iter()
        .map(|&p| {
            let n = if p == Proto::Ipv4Udp { udp_packets } else { 0 };
            (
                p,
                ProtoCounter {
                    packets: n,
                    bytes: n * 100,
                },
            )
        })
        .collect();
    let mut s = Snapshot::from_counters(
        0.0,
        vec![],
        &protos,
        &[
            (Event::Truncated, 2),
            (Event::FlowCreated, 5),
            (Event::AggInsertFailed, 1),
            (Event::DroppedBlocked, 5),
            (Event::PassedAllowlisted, 2),
        ],
    )
    .with_flows(
        &SweepTotals {
            exported_idle: 1,
            in_table: 4,
            live: 3,
            created_at_sweep: 5,
            ..SweepTotals::default()
        },
        QueueCounters {
            vectors_in: 9,
            vectors_out: 8,
            full_waits: 1,
        },
    );
    s.scoring = ScoreCounters {
        scored: 8,
        anomalies: ["autoencoder", "iforest", "rf", "ensemble"]
            .iter()
            .map(|m| ((*m).to_owned(), if *m == "ensemble" { 2 } else { 0 }))
            .collect(),
        rejected: 0,
        channels: 3,
        channels_dropped: 1,
    };
    s
}

fn metrics() -> Metrics {
    let m = Metrics::new(
        64,
        Some(&BundleInfo {
            origin: "embedded".into(),
            dataset: "cic-ids2017".into(),
            provider: "cpu".into(),
        }),
    )
    .with_bgp()
    .with_fleet();
    m.set_attachments(&[InterfaceInfo {
        iface: "veth0".into(),
        mode: "skb".into(),
        egress: false,
    }]);
    m
}

fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn a_reloaded_bundle_replaces_the_bundle_info() {
    let m = metrics();
    m.set_bundle(&BundleInfo {
        origin: "/srv/bundles/new".into(),
        dataset: "cic-ids2017".into(),
        provider: "cpu".into(),
    });
    let text = m.text();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("netanom_model_bundle_info{"))
        .collect();
    assert_eq!(
        lines,
        [r#"netanom_model_bundle_info{origin="/srv/bundles/new",dataset="cic-ids2017",provider="cpu"} 1"#]
    );
}

#[test]
fn snapshot_values_appear_in_both_formats() {
    let m = metrics();
    m.update(&snapshot(7), 3);
    m.observe_drain(DrainStage::Sweep, Duration::from_micros(300));
    m.observe_scoring(Duration::from_millis(2));
    let text = m.text();
    for (series, v) in [
        (r#"netanom_packets_total{family="ipv4",transport="udp"}"#, 7.0),
        (r#"netanom_bytes_total{family="ipv4",transport="udp"}"#, 700.0),
        (r#"netanom_packets_total{family="ipv6",transport="tcp"}"#, 0.0),
        (r#"netanom_parser_events_total{event="truncated"}"#, 2.0),
        ("netanom_aggregate_insert_failed_total", 1.0),
        ("netanom_flows_created_total", 5.0),
        (r#"netanom_flows_exported_total{path="idle"}"#, 1.0),
        ("netanom_flows_evicted_total", 0.0),
        ("netanom_flows_in_table", 4.0),
        ("netanom_flows_live", 3.0),
        ("netanom_beacon_channels", 3.0),
        ("netanom_beacon_channels_dropped_total", 1.0),
        ("netanom_flow_table_entries", 64.0),
        ("netanom_flow_table_fill_ratio", 4.0 / 64.0),
        ("netanom_vectors_scored_total", 8.0),
        (r#"netanom_anomalies_total{model="ensemble"}"#, 2.0),
        (r#"netanom_anomalies_total{model="rf"}"#, 0.0),
        ("netanom_queue_vectors_in_total", 9.0),
        ("netanom_queue_vectors_out_total", 8.0),
        ("netanom_queue_full_waits_total", 1.0),
        ("netanom_queue_batches", 3.0),
        (r#"netanom_drain_duration_seconds_count{stage="sweep"}"#, 1.0),
        (r#"netanom_drain_duration_seconds_count{stage="ring"}"#, 0.0),
        ("netanom_scoring_duration_seconds_count", 1.0),
        (r#"netanom_scoring_duration_seconds_bucket{le="0.0025"}"#, 1.0),
        (r#"netanom_scoring_duration_seconds_bucket{le="0.001"}"#, 0.0),
    ] {
        assert_eq!(sample(&text, series), Some(v), "{series}:\n{text}");
    }
    let build = format!(
        r#"netanom_build_info{{version="{}"}} 1"#,
        env!("CARGO_PKG_VERSION")
    );
    assert!(text.contains(&build), "{text}");
    assert!(
        text.contains(
            r#"netanom_model_bundle_info{origin="embedded",dataset="cic-ids2017",provider="cpu"} 1"#
        )
    );
    assert!(
        text.contains(r#"netanom_xdp_attached_info{iface="veth0",mode="skb",egress="false"} 1"#),
        "{text}"
    );
    assert!(text.contains("# TYPE netanom_packets_total counter\n"));
    assert!(text.contains("# TYPE netanom_build_info gauge\n"));
    assert!(!text.contains("# EOF"));
    let om = m.openmetrics();
    assert!(om.ends_with("# EOF\n") && om.contains("# TYPE netanom_build info\n"));
    assert!(om.contains(r#"netanom_packets_total{family="ipv4",transport="udp"} 7"#));
}

fn by_kind(counts: &[(Kind, u64)]) -> [u64; FINDING_KINDS] {
    let mut out = [0; FINDING_KINDS];
    for (k, n) in counts {
        out[k.index()] = *n;
    }
    out
}

fn mitigation_counters(blocks_active: u64, alerts: u64) -> ResponseTotals {
    ResponseTotals {
        blocks_added: 4,
        blocks_expired: 1,
        blocks_active,
        would_block: 6,
        allowlisted: 2,
        rate_limits_added: 1,
        rate_limits_active: 1,
        breaker_trips: 1,
        breaker_open: true,
        alerts,
        alert_errors: 0,
        findings: 12,
        findings_by_kind: by_kind(&[(Kind::SourceFlood, 9), (Kind::VictimFlood, 3)]),
        configured_mode: "mitigate",
        effective_mode: "mitigate",
    }
}

#[test]
fn mitigation_counters_drops_and_mode() {
    let m = metrics();
    m.update(&snapshot(7), 0);
    m.update_mitigation(&mitigation_counters(3, 10), "mitigate", "mitigate");
    let text = m.text();
    assert!(text.contains("netanom_mode_info{configured=\"mitigate\",effective=\"mitigate\"} 1\n"));
    // The effective mode falls back: only the new pair is exposed.
    m.update_mitigation(&mitigation_counters(2, 8), "mitigate", "observe");
    let text = m.text();
    for (series, v) in [
        (r#"netanom_packets_dropped_total{reason="blocklist"}"#, 5.0),
        (r#"netanom_packets_dropped_total{reason="rate_limit"}"#, 0.0),
        ("netanom_packets_passed_allowlisted_total", 2.0),
        ("netanom_blocks_active", 2.0),
        ("netanom_blocks_added_total", 4.0),
        ("netanom_blocks_expired_total", 1.0),
        ("netanom_would_block_total", 6.0),
        ("netanom_allowlisted_decisions_total", 2.0),
        ("netanom_rate_limits_active", 1.0),
        ("netanom_rate_limits_added_total", 1.0),
        ("netanom_circuit_breaker_open", 1.0),
        ("netanom_circuit_breaker_trips_total", 1.0),
        (r#"netanom_findings_total{kind="source_flood"}"#, 9.0),
        (r#"netanom_findings_total{kind="victim_flood"}"#, 3.0),
        (r#"netanom_findings_total{kind="source_scan"}"#, 0.0),
        // A counter never goes down (10 was exposed before 8 was read).
        ("netanom_alerts_total", 10.0),
        ("netanom_alert_write_errors_total", 0.0),
        (
            r#"netanom_mode_info{configured="mitigate",effective="observe"}"#,
            1.0,
        ),
    ] {
        assert_eq!(sample(&text, series), Some(v), "{series}:\n{text}");
    }
    assert!(text.contains("# TYPE netanom_packets_dropped_total counter\n"));
    assert!(text.contains("# TYPE netanom_mode_info gauge\n"));
    assert!(
        !text.contains(r#"effective="mitigate""#),
        "old mode pair still exposed:\n{text}"
    );
    assert_eq!(text.matches("netanom_mode_info{").count(), 1, "{text}");
    // Back again, and the breaker closes.
    let mut c = mitigation_counters(3, 10);
    c.breaker_open = false;
    m.update_mitigation(&c, "mitigate", "mitigate");
    let text = m.text();
    assert_eq!(sample(&text, "netanom_circuit_breaker_open"), Some(0.0));
    assert_eq!(sample(&text, "netanom_blocks_active"), Some(3.0));
    assert_eq!(text.matches("netanom_mode_info{").count(), 1, "{text}");
    assert!(text.contains(r#"netanom_mode_info{configured="mitigate",effective="mitigate"} 1"#));
    let om = m.openmetrics();
    assert!(
        om.contains(r#"netanom_packets_dropped_total{reason="blocklist"} 5"#),
        "{om}"
    );
}

/// Every metric family, fully populated.
fn full_exposition() -> String {
    let m = metrics();
    m.update(&snapshot(7), 1);
    m.observe_drain(DrainStage::Ring, Duration::from_micros(30));
    m.observe_scoring(Duration::from_millis(1));
    m.update_mitigation(&mitigation_counters(3, 10), "mitigate", "observe");
    m.text()
}

#[test]
fn every_metric_is_documented_in_the_readme() {
    const README: &str = include_str!("../../../../README.md");
    let start = README
        .find("\n### Metrics\n")
        .expect("README has a Metrics section");
    let section = &README[start + 1..];
    let section = &section[..section[1..].find("\n#").map_or(section.len(), |i| i + 1)];
    let text = full_exposition();
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next())
        .collect();
    assert!(names.len() > 30, "{names:?}");
    let missing: Vec<&&str> = names
        .iter()
        .filter(|n| !section.contains(&format!("`{n}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "metrics missing from README.md's Metrics section: {missing:?}"
    );
}

#[test]
fn promtool_accepts_the_exposition() {
    use std::{
        io::Write as _,
        process::{Command, Stdio},
    };
    let Ok(mut check) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        eprintln!("skipped: promtool not installed (`cargo xtask setup` installs it)");
        return;
    };
    let text = full_exposition();
    check.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = check.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics: {report}\n{text}"
    );
}

#[test]
fn counters_never_go_down() {
    let m = metrics();
    m.update(&snapshot(7), 0);
    m.update(&snapshot(5), 0);
    let series = r#"netanom_packets_total{family="ipv4",transport="udp"}"#;
    assert_eq!(sample(&m.text(), series), Some(7.0));
    m.update(&snapshot(9), 0);
    assert_eq!(sample(&m.text(), series), Some(9.0));
}

#[test]
fn classic_conversion_renames_families_and_escapes_help() {
    let om = "# HELP a_b Say \\\"hi\\\" \\\\ now\n# TYPE a_b counter\na_b_total 1\n\
              # HELP c Info.\n# TYPE c info\nc_info{x=\"1\"} 1\n# TYPE d unknown\nd 2\n# EOF\n";
    assert_eq!(
        openmetrics_to_text(om),
        "# HELP a_b_total Say \"hi\" \\\\ now\n# TYPE a_b_total counter\na_b_total 1\n\
         # HELP c_info Info.\n# TYPE c_info gauge\nc_info{x=\"1\"} 1\n# TYPE d untyped\nd 2\n"
    );
}

#[test]
fn responses_by_path_and_method() {
    let m = metrics();
    let get = respond(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &m);
    assert_eq!((get.status, get.content_type), (200, TEXT_CONTENT_TYPE));
    assert!(get.body.contains("netanom_packets_total"));
    let om = respond(
        b"GET /metrics?x=1 HTTP/1.1\r\n\
          ACCEPT: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n\r\n",
        &m,
    );
    assert_eq!((om.status, om.content_type), (200, OPENMETRICS_CONTENT_TYPE));
    let head = respond(b"HEAD /metrics HTTP/1.0\r\n\r\n", &m);
    assert!(head.head_only && !String::from_utf8(head.to_bytes()).unwrap().contains("# TYPE"));
    assert_eq!(respond(b"GET / HTTP/1.1\r\n\r\n", &m).status, 404);
    assert_eq!(respond(b"GET /metricsx HTTP/1.1\r\n\r\n", &m).status, 404);
    let post = respond(b"POST /metrics HTTP/1.1\r\n\r\n", &m);
    assert_eq!(post.status, 405);
    assert!(
        String::from_utf8(post.to_bytes())
            .unwrap()
            .contains("Allow: GET, HEAD\r\n")
    );
    for bad in [
        &b"\xff\xfe\r\n\r\n"[..],
        b"GET\r\n\r\n",
        b"GET /metrics\r\n\r\n",
        b"GET /metrics SPDY/3\r\n\r\n",
        b"GET  /metrics HTTP/1.1\r\n\r\n",
        b"GET metrics HTTP/1.1\r\n\r\n",
        b"\r\n\r\n",
    ] {
        assert_eq!(respond(bad, &m).status, 400, "{bad:?}");
    }
}

/// Sends `request` to the server, returns the whole answer (the server closes).
async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The server may answer (and close) before a long request is fully written.
    let _ = s.write_all(request).await;
    let _ = s.shutdown().await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn status(answer: &str) -> &str {
    answer.lines().next().unwrap_or("")
}

#[tokio::test]
async fn http_server_answers_on_a_real_socket() {
    let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = TcpListener::from_std(listener).unwrap();
    let m = Arc::new(metrics());
    m.update(&snapshot(11), 0);
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, m, async {
        let _ = stopped.await;
    }));

    let ok = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert_eq!(status(&ok), "HTTP/1.1 200 OK", "{ok}");
    assert!(ok.contains("Content-Type: text/plain; version=0.0.4"), "{ok}");
    let (head, body) = ok.split_once("\r\n\r\n").unwrap();
    assert!(
        head.contains(&format!("Content-Length: {}\r\n", body.len())),
        "{head}"
    );
    for name in [
        "netanom_packets_total",
        "netanom_flows_created_total",
        "netanom_anomalies_total",
        "netanom_drain_duration_seconds_bucket",
        "netanom_build_info",
    ] {
        assert!(body.contains(name), "{name} missing:\n{body}");
    }
    assert!(body.contains(r#"netanom_packets_total{family="ipv4",transport="udp"} 11"#));

    assert_eq!(
        status(&exchange(addr, b"GET /nope HTTP/1.1\r\n\r\n").await),
        "HTTP/1.1 404 Not Found"
    );
    assert_eq!(
        status(&exchange(addr, b"DELETE /metrics HTTP/1.1\r\n\r\n").await),
        "HTTP/1.1 405 Method Not Allowed"
    );
    // Garbage, an oversized head, a connection closed mid-request: answered or dropped,
    // and the server keeps serving.
    assert_eq!(
        status(&exchange(addr, b"\x00\x01garbage\n\n").await),
        "HTTP/1.1 400 Bad Request"
    );
    let huge = vec![b'a'; 3 * MAX_REQUEST_BYTES];
    assert_eq!(
        status(&exchange(addr, &huge).await),
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
    assert_eq!(exchange(addr, b"GET /metr").await, "");
    // Concurrent scrapes.
    let scrapes: Vec<_> = (0..8)
        .map(|_| tokio::spawn(exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n")))
        .collect();
    for s in scrapes {
        assert_eq!(status(&s.await.unwrap()), "HTTP/1.1 200 OK");
    }
    stop.send(()).unwrap();
    server.await.unwrap();
}

#[test]
fn server_thread_serves_and_stops() {
    let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let server = Server::start(listener, Arc::new(metrics())).unwrap();
    let addr = server.local_addr();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    use std::io::{Read as _, Write as _};
    s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    drop(server);
    assert!(std::net::TcpStream::connect(addr).is_err(), "stopped serving");
}

#[test]
fn busy_port_is_a_clear_error() {
    let first = bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = first.local_addr().unwrap();
    let e = bind(addr).unwrap_err().to_string();
    assert!(
        e.contains(&addr.to_string()) && e.contains("--metrics-addr") && e.contains("--no-metrics"),
        "{e}"
    );
    assert!(e.contains("another netanom agent"), "{e}");
}
