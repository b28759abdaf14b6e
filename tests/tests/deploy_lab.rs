//! The deployment files against the real agent in the lab.
//!
//! - The Grafana dashboard and the alert rules: the agent runs in mitigate mode under traffic
//!   and attacks chosen so that every mitigation panel moves (a spoofed SYN flood: a victim
//!   finding and a rate limit; five flooding sources, two of them allowlisted, one of those
//!   blocked by hand: blocks that expire after a second, the circuit breaker tripping at the new-block
//!   cap, would-block and allowlisted decisions, allowlisted passes), scraped every second by a
//!   real Prometheus that evaluates deploy/prometheus/netanom-rules.yml. Every query of
//!   deploy/grafana/netanom.json must then parse and return data; every metric the dashboard
//!   and the rules name must be in the agent's exposition; every rule must evaluate, and the
//!   breaker and victim alerts must fire.
//! - The DaemonSet's terminationGracePeriodSeconds: a clean stop with 100,000 live flows
//!   (each exported and scored) takes a fraction of it.
use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use netanom_lab::{
    Pace, Pair, RawSender, TempDir,
    agent::netanom_in,
    deploy::{
        BUILTINS, PanelQuery, RULES, all_panels, dashboard, expand, legend_labels, metric_names,
        panel_queries, read, repo_file, yaml,
    },
    fleet::fleet_section,
    http::{http_get, sample},
    lab_setup,
    nats::Nats,
    probes::{attacker, spoofed_syn_flood, udp_flood, udp_through},
    prometheus::{api, query, start_prometheus, urlencode},
    servers::{KillOnDrop, tool},
    start_agent as start_lab_agent, traffic, wait_until,
};
use serde_json::Value;

/// The two scenarios share two cores: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

const METRICS_PORT: u16 = 19756;
const PROMETHEUS_PORT: u16 = 19091;

/// Mitigate mode; flows end (and are scored) a second after their last packet; blocks last a
/// second; the second new block within a minute trips the breaker, which stays open; two
/// flooding sources are allowlisted (.70 and .71).
const CONFIG: &str = "[agent]\nmode = \"mitigate\"\n\
    [datapath]\nidle_timeout = 1.0\n\
    [mitigation]\nblock_ttl = 1.0\nmax_new_blocks_per_minute = 2\nbreaker_cooldown = 600.0\n\
    [allowlist]\nprefixes = [\"198.18.0.70/31\"]\n";

/// Metrics whose panels may stay at zero in this test, and why (their series must still be
/// there, so the queries are checked to parse and return data):
const MAY_STAY_ZERO: [(&str, &str); 14] = [
    (
        "netanom_fleet_connections_total",
        "the one connection is made before Prometheus' first scrape of the agent",
    ),
    (
        "netanom_fleet_decisions_applied_total",
        "the agent is the fleet's only gateway: nothing comes from another",
    ),
    ("netanom_fleet_outbound_queue", "NATS keeps up: nothing waits"),
    (
        "netanom_fleet_outbound_dropped_total",
        "NATS keeps up: nothing waits",
    ),
    (
        "netanom_fleet_messages_rejected_total",
        "only the agent's own well-formed messages are on the stream",
    ),
    (
        "netanom_anomalies_total",
        "the models need not flag the lab's synthetic flows",
    ),
    ("netanom_flows_evicted_total", "the flow table is far from full"),
    (
        "netanom_flows_insert_failed_total",
        "the flow table is far from full",
    ),
    (
        "netanom_aggregate_insert_failed_total",
        "the aggregate tables are far from full",
    ),
    (
        "netanom_flows_export_lost_total",
        "the ring buffer keeps up at these rates",
    ),
    (
        "netanom_queue_full_waits_total",
        "scoring keeps up at these rates",
    ),
    ("netanom_queue_batches", "scoring keeps up at these rates"),
    ("netanom_alert_write_errors_total", "the alert file is writable"),
    (
        "netanom_parser_events_total",
        "every frame the lab sends is well formed",
    ),
];

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The sample names of a text exposition.
fn exposed_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next().map(str::to_owned))
        .collect()
}

/// The agent's text exposition, once `done` holds for it (at most `limit`).
fn metrics_when(lab: &Pair, limit: Duration, what: &str, done: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    wait_until(limit, || {
        let (_, _, body) = http_get(&lab.a, METRICS_PORT, "/metrics", None).ok()?;
        let ok = done(&body);
        last = body;
        ok.then(|| last.clone())
    })
    .unwrap_or_else(|| panic!("the agent never showed {what}:\n{last}"))
}

fn at_least(text: &str, series: &str, min: f64) -> bool {
    sample(text, series).is_some_and(|v| v >= min)
}

/// Drives the agent through traffic, a spoofed SYN flood and a multi-source flood; returns
/// its exposition once every mitigation counter has moved.
fn traffic_and_attacks(lab: &Pair, dirs: &netanom_lab::StateDirs) -> String {
    assert_eq!(udp_through(lab, &lab.b_side.ep, 50), 50, "benign traffic passes");
    let (code, out, err) = netanom_in(
        lab,
        &[
            "block",
            "add",
            "198.18.0.70",
            "--ttl",
            "600",
            "--pin-dir",
            dirs.pin(),
        ],
    );
    assert_eq!(code, Some(0), "{out}{err}");

    // A victim: 12,000 SYNs from 4,000 spoofed sources get a rate limit that drops.
    let pace = Pace::rate(8_000, Duration::from_secs(4));
    assert_eq!(spoofed_syn_flood(lab, 12_000, 4_000, &pace), 12_000);
    metrics_when(lab, Duration::from_secs(8), "a rate limit that dropped", |m| {
        at_least(m, "netanom_rate_limits_added_total", 1.0)
            && at_least(m, r#"netanom_packets_dropped_total{reason="rate_limit"}"#, 1.0)
            && at_least(m, r#"netanom_findings_total{kind="victim_flood"}"#, 1.0)
    });

    // Five sources flood at 4,000 packets/s each (the floor is 2,000): two are blocked, the
    // third trips the breaker (would-block); the allowlisted ones are never blocked (.71: an
    // allowlisted decision) and pass their blocks (.70's manual one); the blocks expire after
    // a second.
    let sources: Vec<_> = [66, 67, 68, 70, 71].iter().map(|o| attacker(lab, *o)).collect();
    udp_flood(lab, &sources, 4_000, Duration::from_millis(1500));
    metrics_when(
        lab,
        Duration::from_secs(10),
        "blocks, expiries, a trip, would-block and allowlisted passes",
        |m| {
            [
                ("netanom_blocks_added_total", 2.0),
                ("netanom_blocks_expired_total", 1.0),
                ("netanom_circuit_breaker_trips_total", 1.0),
                ("netanom_circuit_breaker_open", 1.0),
                ("netanom_would_block_total", 1.0),
                ("netanom_allowlisted_decisions_total", 1.0),
                ("netanom_packets_passed_allowlisted_total", 1.0),
                (r#"netanom_packets_dropped_total{reason="blocklist"}"#, 1.0),
                (r#"netanom_findings_total{kind="source_flood"}"#, 1.0),
            ]
            .iter()
            .all(|(s, v)| at_least(m, s, *v))
        },
    )
}

/// Values of a query result (a vector or a matrix), per series: (labels, finite values).
fn series(data: &Value) -> Vec<(BTreeMap<String, String>, Vec<f64>)> {
    let parse = |v: &Value| {
        v[1].as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|x| x.is_finite())
    };
    data["result"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let labels = r["metric"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect();
            let values = match r["values"].as_array() {
                Some(vs) => vs.iter().filter_map(parse).collect(),
                None => parse(&r["value"]).into_iter().collect(),
            };
            (labels, values)
        })
        .collect()
}

/// Runs one panel query over the test's span (and as an instant query at its end when the
/// panel shows the latest value); checks it returns finite data whose series carry the
/// legend's labels; returns the largest value seen.
fn run_panel_query(lab: &Pair, q: &PanelQuery, expr: &str, start: f64, end: f64) -> f64 {
    let e = urlencode(expr);
    let range = api(
        &lab.a,
        PROMETHEUS_PORT,
        &format!("query_range?query={e}&start={start:.3}&end={end:.3}&step=1"),
    )
    .unwrap_or_else(|err| panic!("{}: Prometheus refused `{expr}`: {err}", q.name()));
    let mut results = vec![range];
    if q.instant {
        let instant = api(&lab.a, PROMETHEUS_PORT, &format!("query?query={e}&time={end:.3}"))
            .unwrap_or_else(|err| panic!("{}: Prometheus refused `{expr}`: {err}", q.name()));
        results.push(instant);
    }
    let mut max = f64::NEG_INFINITY;
    for data in results {
        let s = series(&data);
        assert!(
            s.iter().any(|(_, v)| !v.is_empty()),
            "{}: `{expr}` returned no data: {data}",
            q.name()
        );
        for (labels, values) in &s {
            for l in legend_labels(&q.legend) {
                assert!(
                    labels.contains_key(&l),
                    "{}: legend {{{{{l}}}}} but the series has {labels:?}",
                    q.name()
                );
            }
            max = values.iter().copied().fold(max, f64::max);
        }
    }
    max
}

/// The dashboard's variables as Grafana would resolve them from this Prometheus: the job its
/// default names (which must exist), the one instance there is (regex-escaped), and the
/// built-in intervals.
fn variables(lab: &Pair, dash: &Value) -> Vec<(&'static str, String)> {
    let vars = dash["templating"]["list"].as_array().unwrap();
    let default = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .and_then(|v| v["current"]["value"].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let values = |label: &str, selector: &str| -> Vec<String> {
        let data = api(
            &lab.a,
            PROMETHEUS_PORT,
            &format!("label/{label}/values?match[]={}", urlencode(selector)),
        )
        .unwrap();
        data.as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    let job = default("job");
    assert!(
        values("job", "netanom_build_info").contains(&job),
        "the job variable's default {job} has no data"
    );
    let instances = values("instance", &format!("netanom_build_info{{job=\"{job}\"}}"));
    assert_eq!(instances, [format!("127.0.0.1:{METRICS_PORT}")]);
    let escaped = instances[0].replace('.', "\\\\.");
    let mut out = vec![
        ("job", job),
        ("instance", escaped),
        ("datasource", default("datasource")),
    ];
    out.extend(BUILTINS.iter().map(|(n, v)| (*n, v.to_string())));
    out
}

/// Every rule of the rule file is loaded and evaluates without error.
fn check_rules(lab: &Pair) {
    let file = yaml(RULES);
    let want: usize = file["groups"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|g| g["rules"].as_vec().unwrap().len())
        .sum();
    let rules = wait_until(Duration::from_secs(10), || {
        let data = api(&lab.a, PROMETHEUS_PORT, "rules").ok()?;
        let rules: Vec<Value> = data["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        let evaluated = rules.iter().all(|r| {
            r["lastEvaluation"]
                .as_str()
                .is_some_and(|t| !t.starts_with("0001"))
        });
        (rules.len() == want && evaluated).then_some(rules)
    })
    .unwrap_or_else(|| panic!("Prometheus did not load and evaluate the {want} rules of {RULES}"));
    for r in &rules {
        assert_eq!(r["health"], "ok", "rule {} : {}", r["name"], r["lastError"]);
    }
    // The breaker is open and a victim was found: those two alerts fire; the agent is up.
    let firing = wait_until(Duration::from_secs(15), || {
        let data = api(&lab.a, PROMETHEUS_PORT, "alerts").ok()?;
        let names: BTreeSet<String> = data["alerts"]
            .as_array()?
            .iter()
            .filter(|a| {
                a["state"] == "firing"
                    && a["labels"]["instance"] == format!("127.0.0.1:{METRICS_PORT}").as_str()
            })
            .filter_map(|a| a["labels"]["alertname"].as_str().map(str::to_owned))
            .collect();
        (names.contains("NetanomCircuitBreakerOpen") && names.contains("NetanomVictimUnderFlood"))
            .then_some(names)
    })
    .expect("NetanomCircuitBreakerOpen and NetanomVictimUnderFlood never fired");
    assert!(!firing.contains("NetanomDown"), "{firing:?}");
    eprintln!("{} rules evaluate; firing: {firing:?}", rules.len());
}

#[test]
fn dashboard_queries_and_alert_rules_work_against_a_real_prometheus_scraping_the_agent() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(prometheus) = tool("prometheus") else {
        eprintln!(
            "skipped: prometheus not installed (Debian package `prometheus`; `cargo xtask setup` installs it)"
        );
        return;
    };
    let Some((lab, dirs)) = lab_setup("dash") else {
        return;
    };
    // The fleet panels need the fleet on: a NATS JetStream server in its own namespace.
    let mut nats = Nats::new("dash", &["dash"]).unwrap();
    let urls = nats.link(&lab.a, 9).unwrap();
    nats.start().unwrap();
    let cfg = dirs.state_dir.join("netanom.toml");
    fs::write(&cfg, format!("{CONFIG}{}", fleet_section("dash", &urls, &[]))).unwrap();
    let alerts = dirs.state_dir.join("alerts.json");
    let addr = format!("127.0.0.1:{METRICS_PORT}");
    let dir = TempDir::new("dash-prometheus");
    let rules = repo_file(RULES).canonicalize().unwrap();
    let start = unix_now() - 1.0;
    let server: KillOnDrop = start_prometheus(&lab.a, &prometheus, &dir, &addr, PROMETHEUS_PORT, &[rules]);
    let agent = start_lab_agent(
        &lab,
        &dirs,
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--metrics-addr",
            &addr,
            "--alerts",
            alerts.to_str().unwrap(),
        ],
    );
    // Prometheus sees the agent before anything happens (mitigate mode, no blocks).
    let up = wait_until(Duration::from_secs(20), || {
        (query(
            &lab.a,
            PROMETHEUS_PORT,
            r#"netanom_mode_info{effective="mitigate"}"#,
        )
        .ok()??
            == 1.0)
            .then_some(())
    });
    let log = || fs::read_to_string(dir.0.join("prometheus.log")).unwrap_or_default();
    assert!(
        up.is_some(),
        "Prometheus never scraped the agent; its log:\n{}",
        log()
    );
    let exposition = traffic_and_attacks(&lab, &dirs);
    // Prometheus has scraped the last of it.
    let scraped = wait_until(Duration::from_secs(10), || {
        (query(&lab.a, PROMETHEUS_PORT, "netanom_circuit_breaker_trips_total").ok()?? >= 1.0).then_some(())
    });
    let log = || fs::read_to_string(dir.0.join("prometheus.log")).unwrap_or_default();
    assert!(
        scraped.is_some(),
        "Prometheus never scraped the trip; its log:\n{}",
        log()
    );
    std::thread::sleep(Duration::from_secs(2));

    // A metric the agent does not export fails here, whether or not its query returns data.
    let names = exposed_names(&exposition);
    let dash = dashboard();
    let queries = panel_queries(&dash);
    for q in &queries {
        for m in metric_names(&q.expr) {
            assert!(
                names.contains(&m),
                "{} names {m}, which the agent does not export",
                q.name()
            );
        }
    }
    for m in metric_names(&read(RULES)) {
        assert!(
            names.contains(&m),
            "{RULES} names {m}, which the agent does not export"
        );
    }

    let vars = variables(&lab, &dash);
    let end = unix_now();
    let mut zero = Vec::new();
    for q in &queries {
        let expr = expand(&q.expr, &vars).unwrap_or_else(|e| panic!("{}: {e}", q.name()));
        let max = run_panel_query(&lab, q, &expr, start, end);
        let exempt = metric_names(&q.expr)
            .iter()
            .all(|m| MAY_STAY_ZERO.iter().any(|(z, _)| z == m));
        if max <= 0.0 {
            assert!(
                exempt,
                "{}: `{expr}` stayed at {max} although the test caused it",
                q.name()
            );
            zero.push(q.name());
        }
    }
    eprintln!(
        "{} panel queries return data; at zero, as allowed ({MAY_STAY_ZERO:?}): {zero:?}",
        queries.len()
    );

    // Tables show these labels as columns: the series must have them.
    for p in all_panels(&dash).into_iter().filter(|p| p["type"] == "table") {
        let columns: Vec<&String> = p["transformations"][0]["options"]["indexByName"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        let expr = expand(p["targets"][0]["expr"].as_str().unwrap(), &vars).unwrap();
        let data = api(
            &lab.a,
            PROMETHEUS_PORT,
            &format!("query?query={}", urlencode(&expr)),
        )
        .unwrap();
        for (labels, _) in series(&data) {
            for c in &columns {
                assert!(
                    labels.contains_key(*c),
                    "table {}: no {c} in {labels:?}",
                    p["title"]
                );
            }
        }
    }

    check_rules(&lab);
    drop(server);
    let (code, _, err) = agent.stop(libc::SIGTERM);
    assert_eq!(code, Some(0), "{err:?}");
}

/// The first value under `key` anywhere in `v`.
fn find_key<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    match v {
        Value::Object(m) => m.get(key).or_else(|| m.values().find_map(|x| find_key(x, key))),
        Value::Array(a) => a.iter().find_map(|x| find_key(x, key)),
        _ => None,
    }
}

/// Live flows before the stop.
const LIVE_FLOWS: u64 = 100_000;

#[test]
fn clean_stop_with_100k_live_flows_fits_the_daemonsets_termination_grace_period() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some((lab, dirs)) = lab_setup("stop") else {
        return;
    };
    let addr = format!("127.0.0.1:{METRICS_PORT}");
    let agent = start_lab_agent(&lab, &dirs, &["--metrics-addr", &addr]);
    // 100,000 one-packet UDP flows (distinct ports) at 50,000 a second; the idle timeout (30 s)
    // keeps them live.
    let tx = RawSender::open(&lab.b, &lab.b_side.iface).unwrap();
    let (src, dst) = (lab.b_side.ep, lab.a_side.ep);
    let sent = tx
        .send_generated(LIVE_FLOWS, &Pace::rate(50_000, Duration::from_secs(10)), |i| {
            traffic::distinct_flow(&src, &dst, i)
        })
        .unwrap();
    assert_eq!(sent, LIVE_FLOWS);
    metrics_when(&lab, Duration::from_secs(20), "100,000 live flows", |m| {
        at_least(m, "netanom_flows_live", LIVE_FLOWS as f64)
    });

    let ds = yaml("deploy/kubernetes/daemonset.yaml");
    let grace = ds["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        .as_i64()
        .unwrap() as f64;
    let t = Instant::now();
    let (code, out, err) = agent.stop(libc::SIGTERM);
    let took = t.elapsed().as_secs_f64();
    assert_eq!(code, Some(0), "clean exit: {err:?}");
    // The last counters: every live flow exported by the flush and scored.
    let last: Value = out
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no final counters on stdout: {out}"));
    let flushed = find_key(&last, "exported_flush")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    assert!(flushed >= LIVE_FLOWS, "flushed {flushed}: {last}");
    eprintln!(
        "clean stop with {flushed} live flows took {took:.2} s; terminationGracePeriodSeconds = {grace}"
    );
    assert!(
        took * 3.0 < grace,
        "a clean stop took {took:.1} s: terminationGracePeriodSeconds {grace} leaves too little room"
    );
}
