//! Bad input: each problem gives a one-paragraph error naming the problem and the fix, a
//! non-zero exit code, and no panic or backtrace.

use std::{path::Path, process::Command};

use netanom_lab::{Agent, agent::xdp_attached, agent_bin, run_to_end};
use netanom_lab::{Pair, require_root, sweep_leftovers};

/// Asserts a clean failure whose message contains every one of `needles`.
fn assert_clean_failure((code, _out, err): (Option<i32>, String, String), needles: &[&str]) {
    assert!(
        matches!(code, Some(c) if c != 0),
        "non-zero exit expected, got {code:?}: {err}"
    );
    for n in needles {
        assert!(err.contains(n), "stderr lacks `{n}`:\n{err}");
    }
    for bad in ["panicked", "backtrace", "RUST_BACKTRACE", "stack backtrace"] {
        assert!(!err.contains(bad), "stderr shows a panic/backtrace:\n{err}");
    }
    let error_lines: Vec<&str> = err.lines().filter(|l| l.starts_with("netanom: error:")).collect();
    assert_eq!(error_lines.len(), 1, "one error paragraph:\n{err}");
}

fn netanom(args: &[&str]) -> Command {
    let mut c = Command::new(agent_bin());
    c.args(args).env("RUST_BACKTRACE", "1");
    c
}

#[test]
fn unknown_interface() {
    assert_clean_failure(
        run_to_end(netanom(&["run", "--iface", "nalab-nope0"])),
        &["nalab-nope0", "does not exist", "--iface", "ip -br link"],
    );
}

#[test]
fn onnx_runtime_library_not_found() {
    if !require_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let dirs = netanom_lab::StateDirs::new("noort");
    assert_clean_failure(
        run_to_end(netanom(&[
            "run",
            "--iface",
            "lo",
            "--ort-lib",
            "/nonexistent/libonnxruntime.so",
            "--pin-dir",
            dirs.pin(),
            "--state-dir",
            dirs.state(),
        ])),
        &[
            "ONNX Runtime was not found",
            "/nonexistent/libonnxruntime.so",
            "cargo xtask setup",
        ],
    );
    assert!(!dirs.pin_dir.exists(), "nothing created on bpffs");
}

#[test]
fn bpffs_not_mounted() {
    if !require_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let dir = std::env::temp_dir();
    assert_clean_failure(
        run_to_end(netanom(&[
            "run",
            "--iface",
            "lo",
            "--bpffs",
            dir.to_str().unwrap(),
        ])),
        &["BPF filesystem is not mounted", "mount -t bpf bpf"],
    );
}

#[test]
fn missing_privileges() {
    // Drop every capability (and root) with setpriv from util-linux.
    if !Path::new("/usr/bin/setpriv").exists() {
        eprintln!("skipped: setpriv not installed");
        return;
    }
    let mut c = Command::new("/usr/bin/setpriv");
    c.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
    ])
    .arg(agent_bin())
    .args(["run", "--iface", "lo"]);
    assert_clean_failure(run_to_end(c), &["CAP_BPF", "CAP_NET_ADMIN", "Run it as root"]);
}

#[test]
fn another_xdp_program_already_attached() {
    if !require_root() {
        eprintln!("skipped: needs root (namespaces, XDP)");
        return;
    }
    sweep_leftovers().unwrap();
    let lab = Pair::new("busy").unwrap();
    let iface = lab.a_side.iface.clone();
    // The first program: another agent instance, attached in skb mode. Without a metrics
    // endpoint: the second agent's default one would otherwise fail first (port in use).
    let first = Agent::start(&lab.a, &["--iface", &iface, "--xdp-mode", "skb", "--no-metrics"]).unwrap();
    let dirs = netanom_lab::StateDirs::new("busy2");
    for mode in ["auto", "skb", "native"] {
        let mut c = lab.a.command(agent_bin());
        c.args(["run", "--iface", &iface, "--xdp-mode", mode]).args([
            "--pin-dir",
            dirs.pin(),
            "--state-dir",
            dirs.state(),
        ]);
        assert_clean_failure(
            run_to_end(c),
            &["another XDP program is already attached", &iface, "xdp off"],
        );
    }
    let (code, _, _) = first.stop(libc::SIGTERM);
    assert_eq!(code, Some(0), "the first agent was not disturbed");
}

/// A bundle that does not fit the live feature schema, a missing bundle, an unknown config
/// key and an invalid allowlist CIDR: each refused before anything is attached or pinned.
#[test]
fn bad_bundle_config_and_cidr_fail_before_attaching() {
    if !require_root() {
        eprintln!("skipped: needs root (namespaces, XDP)");
        return;
    }
    sweep_leftovers().unwrap();
    netanom_lab::sweep_state_leftovers();
    let lab = Pair::new("badin").unwrap();
    let dirs = netanom_lab::StateDirs::new("badin");
    std::fs::create_dir_all(&dirs.state_dir).unwrap();
    let iface = lab.a_side.iface.clone();
    let kdd = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/bundles/kdd99");
    let unknown_key = dirs.state_dir.join("unknown-key.toml");
    std::fs::write(&unknown_key, "[agent]\nmode = \"mitigate\"\nbogus = 1\n").unwrap();
    let bad_cidr = dirs.state_dir.join("bad-cidr.toml");
    std::fs::write(&bad_cidr, "[allowlist]\nprefixes = [\"198.18.0.0/33\"]\n").unwrap();
    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        (
            vec!["--bundle".into(), kdd.display().to_string()],
            vec!["kdd99", "missing: [duration", "omit --bundle", "cic-ids2017"],
        ),
        (
            vec!["--bundle".into(), "/nonexistent/bundle".into()],
            vec!["/nonexistent/bundle"],
        ),
        (
            vec!["--config".into(), unknown_key.display().to_string()],
            vec!["unknown-key.toml:3:1", "unknown field `bogus`"],
        ),
        (
            vec!["--config".into(), bad_cidr.display().to_string()],
            vec![
                "bad-cidr.toml:2:13",
                "198.18.0.0/33",
                "prefix length must be 0 to 32",
            ],
        ),
    ];
    for (extra, needles) in cases {
        let mut c = lab.a.command(agent_bin());
        c.args(["run", "--iface", &iface, "--no-metrics"])
            .args(["--pin-dir", dirs.pin(), "--state-dir", dirs.state()])
            .args(&extra);
        assert_clean_failure(run_to_end(c), &needles);
        assert!(!xdp_attached(&lab.a, &iface), "{extra:?}: nothing attached");
        assert!(
            !dirs.pin_dir.join("NA_BLOCK4").exists(),
            "{extra:?}: nothing pinned"
        );
    }
}
