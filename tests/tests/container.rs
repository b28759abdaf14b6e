//! The container image, run the way a container runtime would run it: `cargo xtask test
//! --container` builds deploy/container/Containerfile, exports the image's filesystem and
//! hands it here ($NETANOM_IMAGE_ROOTFS, with the image's configuration in
//! $NETANOM_IMAGE_CONFIG). `podman run` cannot set rlimits in this sandbox, so the test does
//! the runtime's part itself: it enters the lab namespace with `nsenter --net` only, gives
//! the agent a private mount namespace with /proc, /sys, /dev and tmpfs /run and /tmp, and the
//! host's /sys/fs/bpf (as `-v /sys/fs/bpf:/sys/fs/bpf` does), chroots into the image and
//! drops every capability but the four the README's `podman run` line adds. The image's own
//! entrypoint, command, environment and health check are used.
//!
//! Checked: the agent attaches to a lab veth, loads ONNX Runtime from the image (found where
//! it searches, no --ort-lib), scores flows and answers on /metrics; the health check passes
//! while it runs and fails once it stopped; a block added with the image's binary survives
//! the container's exit (pinned on the host's bpffs) and is enforced by the next container.
use std::{path::PathBuf, process::Command, time::Duration};

use netanom_lab::{
    Agent, Pace, Pair, RawSender, StateDirs,
    agent::xdp_attached,
    http::{http_get, sample},
    lab_setup,
    probes::{attacker, udp_through},
    run_to_end, traffic, wait_until,
};
use serde_json::Value;

/// What `--cap-drop all --cap-add BPF --cap-add NET_ADMIN --cap-add PERFMON --cap-add
/// SYS_RESOURCE` leaves, as setpriv names them.
const CAPS: &str = "-all,+bpf,+net_admin,+perfmon,+sys_resource";
/// The same as a capability mask (CAP_NET_ADMIN 12, CAP_SYS_RESOURCE 24, CAP_PERFMON 38,
/// CAP_BPF 39).
const CAP_MASK: u64 = (1 << 12) | (1 << 24) | (1 << 38) | (1 << 39);

/// The exported image: its root filesystem and `podman image inspect`'s configuration.
struct Image {
    rootfs: PathBuf,
    config: Value,
}

impl Image {
    /// None (the test is skipped) unless `cargo xtask test --container` made one.
    fn from_env() -> Option<Image> {
        let rootfs = PathBuf::from(std::env::var_os("NETANOM_IMAGE_ROOTFS")?);
        let config =
            std::fs::read_to_string(std::env::var_os("NETANOM_IMAGE_CONFIG")?).expect("image config");
        Some(Image {
            rootfs,
            config: serde_json::from_str(&config).expect("image config JSON"),
        })
    }

    fn list(&self, v: &Value) -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|s| s.as_str().expect("a string").to_owned())
            .collect()
    }

    /// The entrypoint and default command, then `extra`.
    fn run_args(&self, extra: &[&str]) -> Vec<String> {
        let c = &self.config["Config"];
        let mut argv = self.list(&c["Entrypoint"]);
        argv.extend(self.list(&c["Cmd"]));
        argv.extend(extra.iter().map(|s| s.to_string()));
        argv
    }

    /// `argv` inside the "container": lab namespace a, a private mount namespace, the image's
    /// root, only the four capabilities, only the image's environment.
    fn command(&self, lab: &Pair, argv: &[String]) -> Command {
        let script = "set -e; R=\"$0\"; \
            mount -t proc proc \"$R/proc\"; mount -t sysfs sysfs \"$R/sys\"; \
            mount --bind /sys/fs/bpf \"$R/sys/fs/bpf\"; mount --rbind /dev \"$R/dev\"; \
            mount -t tmpfs tmpfs \"$R/run\"; mount -t tmpfs tmpfs \"$R/tmp\"; \
            exec chroot \"$R\" /usr/bin/setpriv --bounding-set=\"$CAPS\" --inh-caps=-all --no-new-privs \"$@\"";
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", lab.a.path().display()))
            .args([
                "--",
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                script,
            ])
            .arg(&self.rootfs)
            .args(argv)
            .env_clear();
        for kv in self.list(&self.config["Config"]["Env"]) {
            if let Some((k, v)) = kv.split_once('=') {
                c.env(k, v);
            }
        }
        c.env("CAPS", CAPS).env("RUST_LOG", "info");
        c
    }

    /// The image's HEALTHCHECK command, run in the "container"; whether it passed.
    fn healthy(&self, lab: &Pair) -> bool {
        // podman reports it beside Config, docker inside it.
        let test = [
            &self.config["Healthcheck"]["Test"],
            &self.config["Config"]["Healthcheck"]["Test"],
        ]
        .map(|t| self.list(t))
        .into_iter()
        .find(|t| !t.is_empty())
        .unwrap_or_default();
        let argv: Vec<String> = match test.first().map(String::as_str) {
            Some("CMD") => test[1..].to_vec(),
            Some("CMD-SHELL") => vec!["/bin/sh".into(), "-c".into(), test[1..].join(" ")],
            other => panic!("the image has no HEALTHCHECK command: {other:?}"),
        };
        let (code, _, err) = run_to_end(self.command(lab, &argv));
        if code != Some(0) {
            eprintln!("health check: exit {code:?}: {err}");
        }
        code == Some(0)
    }

    /// Starts the image's agent on a's interface, pinning under `dirs`.
    fn start_agent(&self, lab: &Pair, dirs: &StateDirs) -> Agent {
        let args = self.run_args(&[
            "--iface",
            &lab.a_side.iface,
            "--pin-dir",
            dirs.pin(),
            "--idle-timeout",
            "1",
            "--stats-interval",
            "60",
            "--alerts",
            "",
        ]);
        Agent::spawn(self.command(lab, &args))
            .unwrap_or_else(|e| panic!("the image's agent did not start: {e}"))
    }
}

/// A /proc/PID/status capability line (hex).
fn caps(pid: u32, line: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix(line))
        .unwrap_or_else(|| panic!("no {line} in {status}"));
    u64::from_str_radix(hex.trim(), 16).unwrap()
}

fn metrics(lab: &Pair) -> Option<String> {
    let (status, _, body) = http_get(&lab.a, 9754, "/metrics", None).ok()?;
    (status == 200).then_some(body)
}

#[test]
fn the_image_runs_the_agent_in_the_lab_with_only_the_xdp_capabilities() {
    let Some(image) = Image::from_env() else {
        eprintln!("skipped: no exported image (`cargo xtask test --container` builds one)");
        return;
    };
    let Some((lab, dirs)) = lab_setup("ctr") else {
        return;
    };
    let agent = image.start_agent(&lab, &dirs);
    let pid = agent.child.id();
    // It is the image's program, with nothing but the four capabilities.
    let root = std::fs::read_link(format!("/proc/{pid}/root")).unwrap();
    assert_eq!(
        root,
        image.rootfs.canonicalize().unwrap(),
        "runs in the image's root"
    );
    // Of those four, what this test itself has (this sandbox's root lacks CAP_SYS_RESOURCE,
    // which is why `podman run` cannot set rlimits here; on kernels with memcg accounting of
    // BPF memory, 5.11 and later, the agent needs no rlimit raised).
    let granted = CAP_MASK & caps(std::process::id(), "CapBnd:");
    if granted != CAP_MASK {
        eprintln!(
            "note: this test runs without capabilities {:#x}: the agent runs without them too",
            CAP_MASK & !granted
        );
    }
    assert_eq!(caps(pid, "CapEff:"), granted, "effective capabilities");
    assert_eq!(caps(pid, "CapBnd:"), granted, "bounding set");
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let ort = image
        .rootfs
        .join("usr/local/lib/netanom/libonnxruntime.so.1.31.1");
    assert!(
        maps.lines().any(|l| l.ends_with(&ort.display().to_string())),
        "ONNX Runtime not loaded from the image ({}):\n{maps}",
        ort.display()
    );

    // Traffic is counted and scored; the endpoint answers.
    let tx = RawSender::open(&lab.b, &lab.b_side.iface).unwrap();
    let pace = Pace::rate(5_000, Duration::from_secs(5));
    traffic::udp_burst(&tx, &lab.b_side.ep, &lab.a_side.ep, false, 100, 32, &pace).unwrap();
    let udp = r#"netanom_packets_total{family="ipv4",transport="udp"}"#;
    let text = wait_until(Duration::from_secs(15), || {
        metrics(&lab).filter(|m| {
            sample(m, udp).is_some_and(|v| v >= 100.0)
                && sample(m, "netanom_vectors_scored_total").is_some_and(|v| v >= 1.0)
        })
    })
    .unwrap_or_else(|| panic!("no counted and scored traffic: {:?}", metrics(&lab)));
    assert!(
        text.contains(&format!(
            "netanom_xdp_attached_info{{iface=\"{}\"",
            lab.a_side.iface
        )),
        "{text}"
    );
    assert!(image.healthy(&lab), "the health check fails while the agent runs");

    // A block added with the image's binary, pinned on the host's bpffs.
    let block = image.command(
        &lab,
        &[
            "/usr/local/bin/netanom",
            "block",
            "add",
            "198.18.0.66",
            "--ttl",
            "600",
            "--pin-dir",
            dirs.pin(),
        ]
        .map(String::from),
    );
    let (code, out, err) = run_to_end(block);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, _, err) = agent.stop(libc::SIGTERM);
    assert_eq!(code, Some(0), "clean exit: {err:?}");
    assert!(!xdp_attached(&lab.a, &lab.a_side.iface));
    assert!(!image.healthy(&lab), "the health check passes with no agent");

    // The next container finds the block and enforces it.
    let agent = image.start_agent(&lab, &dirs);
    assert_eq!(
        udp_through(&lab, &attacker(&lab, 66), 20),
        0,
        "the pinned block survived the restart"
    );
    assert_eq!(udp_through(&lab, &lab.b_side.ep, 20), 20, "other traffic passes");
    let (code, _, err) = agent.stop(libc::SIGTERM);
    assert_eq!(code, Some(0), "clean exit: {err:?}");
}
