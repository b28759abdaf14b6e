//! Tests of the command line: definitions, flags over the configuration file.

use clap::{CommandFactory as _, Parser as _};

use super::app::{Cli, Command};
use crate::{datapath::ModePreference, respond::Mode, sinks::metrics};

#[test]
fn cli_definition_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn run_accepts_repeated_interfaces() {
    let cli = Cli::try_parse_from([
        "netanom",
        "run",
        "--iface",
        "a",
        "--iface",
        "b",
        "--xdp-mode",
        "skb",
    ])
    .unwrap();
    let Command::Run(a) = cli.command else {
        panic!("not the run subcommand");
    };
    assert_eq!(a.ifaces, ["a", "b"]);
    let cfg = a.config().unwrap();
    assert_eq!(cfg.datapath.xdp_mode, ModePreference::Skb);
    assert_eq!(cfg.agent.interfaces, ["a", "b"]);
    assert!(cfg.metrics.enabled, "metrics are served by default");
    assert_eq!(cfg.metrics.addr, metrics::DEFAULT_ADDR.parse().unwrap());
}

#[test]
fn flags_override_the_config_file() {
    let dir = std::env::temp_dir().join(format!("netanom-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("c.toml");
    std::fs::write(
        &file,
        "[agent]\nmode = \"mitigate\"\nstats_interval = 5\n[datapath]\nidle_timeout = 7\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let cfg = |extra: &[&str]| {
        let cli = Cli::try_parse_from(["netanom", "run", "--config", f].iter().chain(extra)).unwrap();
        match cli.command {
            Command::Run(a) => a.config(),
            _ => panic!("not run"),
        }
    };
    let c = cfg(&[]).unwrap();
    assert_eq!(c.agent.mode, Mode::Mitigate);
    assert_eq!(c.agent.stats_interval, 5.0);
    assert_eq!(c.datapath.idle_timeout, 7.0);
    let c = cfg(&["--mode", "observe", "--idle-timeout", "9", "--alerts", ""]).unwrap();
    assert_eq!(c.agent.mode, Mode::Observe);
    assert_eq!(c.datapath.idle_timeout, 9.0);
    assert_eq!(
        c.agent.stats_interval, 5.0,
        "not given on the command line: the file's"
    );
    std::fs::write(&file, "[agent]\nmode = \"mitigate\"\nbogus = 1\n").unwrap();
    let e = cfg(&[]).unwrap_err().to_string();
    assert!(e.contains(":3:") && e.contains("bogus"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn control_commands_parse() {
    let c = Cli::try_parse_from([
        "netanom",
        "block",
        "add",
        "198.18.0.9/32",
        "--ttl",
        "60",
        "--reason",
        "x",
    ])
    .unwrap();
    assert!(matches!(c.command, Command::Block(_)));
    let e = Cli::try_parse_from(["netanom", "block", "add", "198.18.0.9/33"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("prefix length"), "{e}");
    let e = Cli::try_parse_from(["netanom", "allow", "add", "10.0.0.1/8"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("did you mean 10.0.0.0/8"), "{e}");
    assert!(Cli::try_parse_from(["netanom", "status", "--json"]).is_ok());
    assert!(
        Cli::try_parse_from(["netanom", "block", "list", "--json", "--pin-dir", "/sys/fs/bpf/x"]).is_ok()
    );
}

#[test]
fn metrics_endpoint_options() {
    let run = |args: &[&str]| {
        Cli::try_parse_from(["netanom", "run"].iter().chain(args)).map(|c| match c.command {
            Command::Run(a) => {
                let c = a.config().unwrap();
                c.metrics.enabled.then_some(c.metrics.addr)
            }
            _ => panic!("not the run subcommand"),
        })
    };
    assert_eq!(
        run(&["--metrics-addr", "[::1]:9100"]).unwrap(),
        Some("[::1]:9100".parse().unwrap())
    );
    assert_eq!(run(&["--no-metrics"]).unwrap(), None);
    let e = run(&["--metrics-addr", "localhost"]).unwrap_err().to_string();
    assert!(e.contains("not ADDRESS:PORT"), "{e}");
    assert!(run(&["--no-metrics", "--metrics-addr", "127.0.0.1:1"]).is_err());
}

#[test]
fn run_over_captures_takes_detection_flags_and_refuses_live_ones() {
    let cli = Cli::try_parse_from([
        "netanom",
        "run",
        "--pcap",
        "a.pcap",
        "--pcap",
        "b.pcapng",
        "--detectors",
        "aggregates",
        "--mode",
        "mitigate",
        "--idle-timeout",
        "5",
    ])
    .unwrap();
    let Command::Run(a) = cli.command else {
        panic!("not the run subcommand");
    };
    assert_eq!(a.pcap.len(), 2);
    let cfg = a.config().unwrap();
    assert_eq!(cfg.detection.detectors, [crate::detect::DetectorName::Aggregates]);
    assert_eq!(cfg.agent.mode, Mode::Mitigate);
    assert_eq!(cfg.datapath.idle_timeout, 5.0);
    for live in [
        &["--iface", "eth0"][..],
        &["--pin-dir", "/sys/fs/bpf/x"],
        &["--metrics-addr", "127.0.0.1:1"],
        &["--flow-table-size", "1024"],
    ] {
        let args = ["netanom", "run", "--pcap", "a.pcap"].iter().chain(live);
        let e = Cli::try_parse_from(args).unwrap_err();
        assert!(e.to_string().contains("cannot be used with"), "{live:?}: {e}");
    }
    let bad = Cli::try_parse_from(["netanom", "run", "--detectors", "rules"]);
    assert!(bad.is_err());
}
