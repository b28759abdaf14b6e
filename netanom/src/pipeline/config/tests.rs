//! Tests of the configuration file: defaults, the example file, the README, errors.
use std::collections::BTreeSet;

use std::time::Duration;

use super::*;
use std::path::PathBuf;

use crate::{
    datapath::ModePreference,
    detect::DetectionConfig,
    model::ExecutionProvider,
    respond::{MitigationConfig, Mode},
    sinks::{alerts::AlertTarget, metrics, stats_line::Format},
};

const EXAMPLE: &str = include_str!("../../../../deploy/netanom.toml");
const README: &str = include_str!("../../../../README.md");

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, "/etc/netanom.toml")
}

fn err(text: &str) -> String {
    match parse(text) {
        Ok(c) => panic!("accepted {text:?}: {c:?}"),
        Err(e) => e.to_string(),
    }
}

/// `section.key` for every key of a serialized configuration.
fn keys(doc: &str) -> BTreeSet<String> {
    let value: toml::Table = toml::from_str(doc).unwrap();
    let mut out = BTreeSet::new();
    for (section, table) in &value {
        let table = table
            .as_table()
            .unwrap_or_else(|| panic!("{section} is not a table"));
        for key in table.keys() {
            out.insert(format!("{section}.{key}"));
        }
    }
    out
}

#[test]
fn empty_file_gives_the_defaults() {
    assert_eq!(parse("").unwrap(), Config::default());
    assert_eq!(
        parse("# nothing\n\n[agent]\n[datapath]\n").unwrap(),
        Config::default()
    );
    Config::default().validate().unwrap();
}

#[test]
fn defaults_are_the_documented_ones() {
    let c = Config::default();
    assert_eq!(c.agent.mode, Mode::Observe);
    assert_eq!(c.agent.alerts, AlertTarget::Stdout);
    assert_eq!(c.agent.bundle, None);
    assert_eq!(c.metrics.addr.to_string(), metrics::DEFAULT_ADDR);
    let load = crate::datapath::LoadOptions::default();
    assert_eq!(c.datapath.flow_table_size, load.flow_entries);
    assert_eq!(c.datapath.src_table_size, load.src_entries);
    assert_eq!(c.datapath.dst_table_size, load.dst_entries);
    assert_eq!(c.datapath.export_ring_bytes, load.export_ring_bytes);
    assert_eq!(secs(c.datapath.active_timeout), Duration::from_secs(120));
}

#[test]
fn defaults_round_trip_through_toml() {
    let doc = Config::default().to_toml();
    assert_eq!(parse(&doc).unwrap(), Config::default(), "{doc}");
    assert!(doc.contains("alerts = \"-\""), "{doc}");
    assert!(doc.contains("bundle = \"\""), "{doc}");
    assert!(doc.contains("addr = \"127.0.0.1:9754\""), "{doc}");
    assert!(doc.contains("xdp_mode = \"auto\""), "{doc}");
    assert!(doc.contains("provider = \"cpu\""), "{doc}");
    assert!(doc.contains("stats_format = \"table\""), "{doc}");
}

#[test]
fn values_are_read() {
    let c = parse(
        r#"
        [agent]
        interfaces = ["eth0", "eth1"]
        mode = "mitigate"
        bundle = "/opt/bundle"
        provider = "cuda"
        alerts = "/var/log/netanom/eve.json"
        stats_interval = 60        # an integer is accepted for seconds
        stats_format = "json"
        [metrics]
        enabled = false
        addr = "[::1]:9755"
        [datapath]
        xdp_mode = "skb"
        egress = false
        idle_timeout = 0.25
        [allowlist]
        prefixes = ["192.0.2.0/24", "2001:db8::/32", "198.51.100.7"]
        [mitigation]
        block_prefix_v4 = 24
        "#,
    )
    .unwrap();
    assert_eq!(c.agent.interfaces, ["eth0", "eth1"]);
    assert_eq!(c.agent.mode, Mode::Mitigate);
    assert_eq!(c.agent.bundle, Some(PathBuf::from("/opt/bundle")));
    assert_eq!(c.agent.provider, ExecutionProvider::Cuda);
    assert_eq!(
        c.agent.alerts,
        AlertTarget::File("/var/log/netanom/eve.json".into())
    );
    assert_eq!(c.agent.stats_interval, 60.0);
    assert_eq!(c.agent.stats_format, Format::Json);
    assert!(!c.metrics.enabled);
    assert_eq!(c.metrics.addr, "[::1]:9755".parse().unwrap());
    assert_eq!(c.datapath.xdp_mode, ModePreference::Skb);
    assert!(!c.datapath.egress);
    assert_eq!(secs(c.datapath.idle_timeout), Duration::from_millis(250));
    assert_eq!(c.allowlist.prefixes.len(), 3);
    assert_eq!(c.allowlist.prefixes[2].to_string(), "198.51.100.7/32");
    assert_eq!(c.mitigation.block_prefix(true), 24);
    assert_eq!(c.mitigation.block_prefix(false), 128);
    // Untouched sections keep their defaults.
    assert_eq!(c.detection, DetectionConfig::default());

    let off = parse("[agent]\nalerts = \"\"\n").unwrap();
    assert_eq!(off.agent.alerts, AlertTarget::Off);
    assert_eq!(
        off.to_toml().lines().find(|l| l.starts_with("alerts")),
        Some("alerts = \"\"")
    );
}

#[test]
fn the_example_file_is_the_defaults_and_lists_every_key() {
    assert_eq!(
        Config::parse(EXAMPLE, "deploy/netanom.toml").unwrap(),
        Config::default()
    );
    // Uncommenting every `# key = value` line must give the defaults again, and every key.
    let uncommented: String = EXAMPLE
        .lines()
        .map(|l| {
            let rest = l.strip_prefix("# ").unwrap_or(l);
            let is_key = rest.split_once(" = ").is_some_and(|(k, _)| {
                !k.is_empty()
                    && k.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            });
            if is_key { rest } else { l }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let full = Config::parse(&uncommented, "deploy/netanom.toml (uncommented)").unwrap();
    assert_eq!(full, Config::default());
    assert_eq!(keys(&uncommented), keys(&Config::default().to_toml()));
}

#[test]
fn readme_documents_every_key() {
    let start = README
        .find("\n### Configuration\n")
        .or_else(|| README.find("\n## Configuration\n"))
        .expect("README.md has a Configuration section");
    let rest = &README[start + 1..];
    let end = rest[1..]
        .find("\n## ")
        .into_iter()
        .chain(rest[1..].find("\n### "))
        .min()
        .map_or(rest.len(), |e| e + 1);
    let section = &rest[..end];
    let missing: Vec<String> = keys(&Config::default().to_toml())
        .into_iter()
        .filter(|k| !section.contains(&format!("`{k}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "README's Configuration section lacks {missing:?}"
    );
}

#[test]
fn unknown_keys_are_rejected_with_line_and_column() {
    let e = err("[agent]\nmode = \"observe\"\n  foo = 1\n");
    assert!(e.starts_with("/etc/netanom.toml:3:3: unknown field `foo`"), "{e}");
    assert!(e.contains("expected one of"), "{e}");
    assert!(e.contains("`interfaces`"), "{e}");

    let e = err("\n[agnet]\n");
    assert!(
        e.starts_with("/etc/netanom.toml:2:2: unknown field `agnet`"),
        "{e}"
    );

    match parse("[datapath]\negres = false\n") {
        Err(ConfigError::Parse { line, column, .. }) => assert_eq!((line, column), (2, 1)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn syntax_and_type_errors_name_the_place() {
    let e = err("[agent]\nmodel_threads = \"four\"\n");
    assert!(e.starts_with("/etc/netanom.toml:2:17: invalid type"), "{e}");
    let e = err("[agent]\nmode = \"block\"\n");
    assert!(
        e.starts_with("/etc/netanom.toml:2:8: unknown variant `block`"),
        "{e}"
    );
    assert!(e.contains("`observe`") && e.contains("`mitigate`"), "{e}");
    let e = err("[datapath]\nflow_table_size = -1\n");
    assert!(e.starts_with("/etc/netanom.toml:2:"), "{e}");
    let e = err("[mitigation]\nblock_prefix_v4 = 300\n");
    assert!(e.starts_with("/etc/netanom.toml:2:"), "{e}");
    let e = err("[agent\n");
    assert!(e.starts_with("/etc/netanom.toml:1:"), "{e}");
    let e = err("[metrics]\naddr = \"localhost\"\n");
    assert!(e.starts_with("/etc/netanom.toml:2:"), "{e}");
    assert!(
        e.contains("`localhost` is not ADDRESS:PORT (for example 127.0.0.1:9754"),
        "{e}"
    );
    // Non-ASCII before the error: the column counts characters.
    let e = err("[agent]\ninterfaces = [\"é\"]   x = 1\n");
    assert!(e.starts_with("/etc/netanom.toml:2:"), "{e}");
}

#[test]
fn bad_prefix_in_allowlist_is_rejected_with_the_cidr_error() {
    let e = err("[allowlist]\nprefixes = [\"192.0.2.0/24\", \"10.0.0.1/8\"]\n");
    assert!(e.starts_with("/etc/netanom.toml:2:29: "), "{e}");
    assert!(e.contains("did you mean 10.0.0.0/8?"), "{e}");
    let e = err("[allowlist]\nprefixes = [\"10.0.0.0/33\"]\n");
    assert!(e.contains("prefix length must be 0 to 32"), "{e}");
    let e = err("[allowlist]\nprefixes = [\"gateway\"]\n");
    assert!(e.contains("`gateway` is not an IP address"), "{e}");
}

#[test]
fn out_of_range_values_name_the_key() {
    for (doc, key, value) in [
        ("[agent]\nmodel_threads = 0", "agent.model_threads", "0"),
        ("[agent]\nmodel_threads = 257", "agent.model_threads", "257"),
        ("[agent]\nstats_interval = 0.01", "agent.stats_interval", "0.01"),
        ("[agent]\ninterfaces = [\"\"]", "agent.interfaces", "\"\""),
        (
            "[agent]\ninterfaces = [\"a-very-long-interface\"]",
            "agent.interfaces",
            "long",
        ),
        (
            "[agent]\ninterfaces = [\"eth0\", \"eth0\"]",
            "agent.interfaces",
            "eth0",
        ),
        ("[agent]\nbpffs = \"bpf\"", "agent.bpffs", "bpf"),
        (
            "[agent]\npin_dir = \"/run/netanom\"",
            "agent.pin_dir",
            "/run/netanom",
        ),
        (
            "[agent]\npin_dir = \"/sys/fs/bpf\"",
            "agent.pin_dir",
            "/sys/fs/bpf",
        ),
        ("[agent]\nstate_dir = \"run\"", "agent.state_dir", "run"),
        (
            "[datapath]\nflow_table_size = 10",
            "datapath.flow_table_size",
            "10",
        ),
        (
            "[datapath]\nsrc_table_size = 67108865",
            "datapath.src_table_size",
            "67108865",
        ),
        ("[datapath]\ndst_table_size = 0", "datapath.dst_table_size", "0"),
        (
            "[datapath]\nexport_ring_bytes = 5000",
            "datapath.export_ring_bytes",
            "5000",
        ),
        (
            "[datapath]\nexport_ring_bytes = 2048",
            "datapath.export_ring_bytes",
            "2048",
        ),
        ("[datapath]\nactive_timeout = 0", "datapath.active_timeout", "0"),
        (
            "[datapath]\nidle_timeout = 86401",
            "datapath.idle_timeout",
            "86401",
        ),
        (
            "[datapath]\nsweep_interval = nan",
            "datapath.sweep_interval",
            "NaN",
        ),
        (
            "[datapath]\naggregate_interval = 3601",
            "datapath.aggregate_interval",
            "3601",
        ),
        ("[detection]\nflow_window = 0.5", "detection.flow_window", "0.5"),
        (
            "[detection]\nmin_anomalous_flows = 0",
            "detection.min_anomalous_flows",
            "0",
        ),
        (
            "[detection]\nmin_anomalous_ratio = 1.5",
            "detection.min_anomalous_ratio",
            "1.5",
        ),
        ("[detection]\nsrc_pps = 0", "detection.src_pps", "0"),
        ("[detection]\nsrc_syn_rate = -1", "detection.src_syn_rate", "-1"),
        (
            "[detection]\nsrc_port_rate = inf",
            "detection.src_port_rate",
            "inf",
        ),
        ("[detection]\ndst_sources = 0", "detection.dst_sources", "0"),
        ("[detection]\ndst_pps = 0", "detection.dst_pps", "0"),
        (
            "[detection]\nlearned_margin = 0.9",
            "detection.learned_margin",
            "0.9",
        ),
        (
            "[detection]\nrecalibrate_quantile = 1",
            "detection.recalibrate_quantile",
            "1",
        ),
        (
            "[detection]\nrecalibrate_quantile = 0.4",
            "detection.recalibrate_quantile",
            "0.4",
        ),
        (
            "[detection]\nrecalibrate_min_samples = 99",
            "detection.recalibrate_min_samples",
            "99",
        ),
        ("[mitigation]\nblock_ttl = 0.5", "mitigation.block_ttl", "0.5"),
        (
            "[mitigation]\nttl_escalation = 0.5",
            "mitigation.ttl_escalation",
            "0.5",
        ),
        (
            "[mitigation]\nmax_block_ttl = 100",
            "mitigation.max_block_ttl",
            "100",
        ),
        ("[mitigation]\nforget_after = 0", "mitigation.forget_after", "0"),
        (
            "[mitigation]\nblock_prefix_v4 = 7",
            "mitigation.block_prefix_v4",
            "7",
        ),
        (
            "[mitigation]\nblock_prefix_v6 = 129",
            "mitigation.block_prefix_v6",
            "129",
        ),
        (
            "[mitigation]\nmax_blocks = 65537",
            "mitigation.max_blocks",
            "65537",
        ),
        (
            "[mitigation]\nmax_new_blocks_per_minute = 0",
            "mitigation.max_new_blocks_per_minute",
            "0",
        ),
        (
            "[mitigation]\nbreaker_cooldown = -1",
            "mitigation.breaker_cooldown",
            "-1",
        ),
        (
            "[mitigation]\nrate_limit_pps = 0",
            "mitigation.rate_limit_pps",
            "0",
        ),
        (
            "[mitigation]\nrate_limit_burst = 0",
            "mitigation.rate_limit_burst",
            "0",
        ),
        (
            "[mitigation]\nrate_limit_ttl = 0",
            "mitigation.rate_limit_ttl",
            "0",
        ),
        (
            "[mitigation]\nmax_rate_limits = 4097",
            "mitigation.max_rate_limits",
            "4097",
        ),
    ] {
        let e = parse(doc).unwrap_err();
        assert!(
            matches!(&e, ConfigError::Invalid { key: k, .. } if k == key),
            "{doc}: {e:?}"
        );
        let e = e.to_string();
        assert!(
            e.starts_with(&format!("/etc/netanom.toml: {key} = ")),
            "{doc}: {e}"
        );
        assert!(e.contains(value), "{doc}: {e}");
        assert!(e.contains("is not allowed: "), "{doc}: {e}");
    }
    let e = err("[mitigation]\nmax_block_ttl = 100\n");
    assert!(e.contains("at least mitigation.block_ttl (300)"), "{e}");
    let e = err("[detection]\nmin_anomalous_ratio = 2\n");
    assert!(e.contains("from 0 to 1"), "{e}");
    // Bounds themselves are allowed.
    parse("[mitigation]\nbreaker_cooldown = 0\nblock_prefix_v4 = 8\nblock_prefix_v6 = 32\n").unwrap();
    parse("[datapath]\nexport_ring_bytes = 4096\nflow_table_size = 64\n").unwrap();
    parse("[detection]\nmin_anomalous_ratio = 0\nrecalibrate_quantile = 0.5\n").unwrap();
    parse("[agent]\npin_dir = \"/sys/fs/bpf/x/y\"\ninterfaces = [\"eth0.100\", \"br-lan\"]\n").unwrap();
}

#[test]
fn validate_without_origin() {
    let mut c = Config::default();
    c.agent.model_threads = 0;
    let e = c.validate().unwrap_err().to_string();
    assert!(
        e.starts_with("agent.model_threads = 0 is not allowed: from 1 to 256"),
        "{e}"
    );
}

#[test]
fn load_names_the_file() {
    let dir = std::env::temp_dir().join(format!("netanom-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("missing.toml");
    let e = Config::load(&missing).unwrap_err().to_string();
    assert!(e.contains(&missing.display().to_string()), "{e}");
    assert!(e.contains("No such file or directory"), "{e}");
    assert!(e.contains("--config"), "{e}");

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[agent]\n\nbogus = true\n").unwrap();
    let e = Config::load(&bad).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("{}:3:1: unknown field `bogus`", bad.display())),
        "{e}"
    );

    let good = dir.join("good.toml");
    std::fs::write(&good, "[agent]\nmode = \"mitigate\"\n").unwrap();
    assert_eq!(Config::load(&good).unwrap().agent.mode, Mode::Mitigate);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn block_ttl_escalates_up_to_the_cap() {
    let m = MitigationConfig::default();
    assert_eq!(m.block_ttl_for(0), Duration::from_secs(300));
    assert_eq!(m.block_ttl_for(1), Duration::from_secs(600));
    assert_eq!(m.block_ttl_for(3), Duration::from_secs(2400));
    assert_eq!(m.block_ttl_for(20), Duration::from_secs(86_400));
    assert_eq!(m.block_ttl_for(u32::MAX), Duration::from_secs(86_400));
}

#[test]
fn secs_saturates() {
    assert_eq!(secs(1.5), Duration::from_millis(1500));
    assert_eq!(secs(-1.0), Duration::ZERO);
    assert_eq!(secs(f64::NAN), Duration::ZERO);
    assert_eq!(secs(f64::INFINITY), Duration::MAX);
}

#[test]
fn mode_and_alert_sink() {
    assert_eq!(Mode::default().to_string(), "observe");
    assert_eq!(Mode::Mitigate.to_string(), "mitigate");
    assert_eq!("-".parse::<AlertTarget>().unwrap(), AlertTarget::Stdout);
    assert_eq!("".parse::<AlertTarget>().unwrap(), AlertTarget::Off);
    assert_eq!(AlertTarget::File("/x".into()).to_string(), "/x");
}
