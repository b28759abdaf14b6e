//! `cargo xtask setup`: check each prerequisite, install only what is missing.
//!
//! One line per step: `[ok]` (already there), `[installed]` (what it did, how long it took)
//! or `[failed]` (why, and the command to run by hand). A second run on a ready machine only
//! checks, which takes seconds.
use std::{
    fs,
    io::Read as _,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context as _, bail};

use crate::cmd;

/// Debian packages for building: LLVM 22 for bpf-linker.
const BUILD_DEBS: &[&str] = &["llvm-22-dev", "libpolly-22-dev", "libzstd-dev", "zlib1g-dev"];
/// Debian packages for the tests: iproute2 for the namespace lab, prometheus (the server and
/// promtool) for the metrics endpoint's, the dashboard's and the alert rules' tests, gobgpd
/// (the BGP speaker beside the agent) and bird2 (the upstream router) for the BGP lab test,
/// nats-server (NATS with JetStream) for the fleet lab test.
const TEST_DEBS: &[&str] = &["iproute2", "prometheus", "gobgpd", "bird2", "nats-server"];
/// Debian packages for `cargo xtask test --container`: building the image and making its
/// Debian base locally (no image registry is needed).
const CONTAINER_DEBS: &[&str] = &["podman", "buildah", "mmdebstrap"];
/// Debian packages for `cargo xtask corpus`: the attack tools, the servers they attack, the
/// benign clients, the capture tool, and nftables (keeps the spoofed flood's random sources
/// inside the lab's range). `dnsmasq-base` is the binary without the host service.
const CORPUS_DEBS: &[&str] = &[
    "nmap",
    "hydra",
    "hping3",
    "openssh-server",
    "openssh-client",
    "vsftpd",
    "tcpdump",
    "dnsmasq-base",
    "bind9-dnsutils",
    "curl",
    "openssl",
    "nftables",
];
/// Debian's hook that tells maintainer scripts whether they may start services
/// (invoke-rc.d, deb-systemd-invoke): exit status 101 means "no".
const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";
const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
const ORT_VERSION: &str = "1.31.1";
/// Must match `netanom::onnx::INSTALL_DIR`, where the agent looks for the library.
const ORT_DIR: &str = "/usr/local/lib/netanom";
const BPFFS: &str = "/sys/fs/bpf";

/// Where the CUDA-enabled build (PyPI `onnxruntime-gpu`) goes; its file names are the same
/// as the CPU build's.
const ORT_CUDA_DIR: &str = "/usr/local/lib/netanom/cuda";

/// What the other commands need from a ready machine.
pub struct Env {
    pub ort_lib: PathBuf,
    /// The `onnxruntime-gpu` build, for the `cuda` feature's tests.
    pub ort_cuda_lib: PathBuf,
}

/// Which commands need a step.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Need {
    /// Building the agent (`cargo xtask build`, the container image's build stage).
    Build,
    /// Running it and the tests on this machine.
    Dev,
    /// `cargo xtask test --container` only.
    Container,
    /// `cargo xtask corpus` only (recording the detection corpus).
    Corpus,
}

/// What a command needs set up: every step up to `upto` (Build or Dev), plus the optional
/// groups it names.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Scope {
    upto: Need,
    container: bool,
    corpus: bool,
}

impl Scope {
    /// Only what building the agent needs (`cargo xtask setup --build-only`).
    pub const BUILD: Scope = Scope {
        upto: Need::Build,
        container: false,
        corpus: false,
    };
    /// Everything but the optional groups (the default).
    pub const DEV: Scope = Scope {
        upto: Need::Dev,
        container: false,
        corpus: false,
    };
    /// The default and the container tools (`--container`).
    pub const CONTAINER: Scope = Scope {
        container: true,
        ..Scope::DEV
    };
    /// The default and the corpus recorder's tools (`--corpus`).
    pub const CORPUS: Scope = Scope {
        corpus: true,
        ..Scope::DEV
    };

    /// This scope with the corpus recorder's tools added (`--container --corpus`).
    pub fn with_corpus(self) -> Scope {
        Scope { corpus: true, ..self }
    }

    fn includes(&self, need: Need) -> bool {
        match need {
            Need::Build | Need::Dev => need <= self.upto,
            Need::Container => self.container,
            Need::Corpus => self.corpus,
        }
    }
}

struct Step {
    name: &'static str,
    need: Need,
    /// `Ok(Some(detail))` when the prerequisite is already there.
    check: fn() -> anyhow::Result<Option<String>>,
    /// Installs it; returns what was done.
    install: fn() -> anyhow::Result<String>,
    /// What to run by hand if `install` fails.
    manual: &'static str,
}

const STEPS: &[Step] = &[
    Step {
        name: "debian packages for building",
        need: Need::Build,
        check: || check_debs(BUILD_DEBS),
        install: || install_debs(BUILD_DEBS),
        manual: "apt-get update && apt-get install -y --no-install-recommends llvm-22-dev libpolly-22-dev libzstd-dev zlib1g-dev",
    },
    Step {
        name: "nightly toolchain with rust-src",
        need: Need::Build,
        check: check_nightly,
        install: install_nightly,
        manual: "rustup toolchain install nightly --profile minimal --component rust-src",
    },
    Step {
        name: "bpf-linker",
        need: Need::Build,
        check: check_bpf_linker,
        install: install_bpf_linker,
        manual: "LLVM_PREFIX=/usr/lib/llvm-22 cargo install bpf-linker@0.13.0 --no-default-features --features llvm-22",
    },
    Step {
        name: "ONNX Runtime library",
        need: Need::Build,
        check: check_ort,
        install: install_ort,
        manual: "python3 -m pip download --no-deps --only-binary=:all: onnxruntime==1.31.1 -d /tmp/ort && \
                 mkdir -p /usr/local/lib/netanom && unzip -j -o /tmp/ort/onnxruntime-1.31.1-*.whl \
                 'onnxruntime/capi/libonnxruntime*.so*' -d /usr/local/lib/netanom",
    },
    Step {
        name: "debian packages for the tests",
        need: Need::Dev,
        check: || check_debs(TEST_DEBS),
        install: || install_debs(TEST_DEBS),
        manual: "apt-get update && apt-get install -y --no-install-recommends iproute2 prometheus gobgpd bird2 nats-server",
    },
    Step {
        name: "ONNX Runtime library, CUDA build",
        need: Need::Dev,
        check: check_ort_cuda,
        install: install_ort_cuda,
        manual: "python3 -m pip download --no-deps --only-binary=:all: onnxruntime-gpu==1.31.1 -d /tmp/ort && \
                 mkdir -p /usr/local/lib/netanom/cuda && unzip -j -o /tmp/ort/onnxruntime_gpu-1.31.1-*.whl \
                 'onnxruntime/capi/libonnxruntime*.so*' -d /usr/local/lib/netanom/cuda",
    },
    Step {
        name: "bpffs at /sys/fs/bpf",
        need: Need::Dev,
        check: check_bpffs,
        install: mount_bpffs,
        manual: "mount -t bpf bpf /sys/fs/bpf",
    },
    Step {
        name: "deployment checkers",
        need: Need::Dev,
        check: crate::deploy::check_tools,
        install: crate::deploy::install_tools,
        manual: crate::deploy::TOOLS_MANUAL,
    },
    Step {
        name: "container tools",
        need: Need::Container,
        check: || check_debs(CONTAINER_DEBS),
        install: || install_debs(CONTAINER_DEBS),
        manual: "apt-get update && apt-get install -y --no-install-recommends podman buildah mmdebstrap",
    },
    Step {
        name: "corpus recorder tools",
        need: Need::Corpus,
        check: || check_debs(CORPUS_DEBS),
        install: || install_debs_without_services(CORPUS_DEBS),
        manual: "apt-get update && apt-get install -y --no-install-recommends nmap hydra hping3 \
                 openssh-server openssh-client vsftpd tcpdump dnsmasq-base bind9-dnsutils curl openssl nftables \
                 (where installing starts services, first put `exit 101` in /usr/sbin/policy-rc.d, \
                 and remove it afterwards, so no sshd, vsftpd or dnsmasq starts on the host)",
    },
];

fn steps(scope: Scope) -> impl Iterator<Item = &'static Step> {
    STEPS.iter().filter(move |s| scope.includes(s.need))
}

/// `cargo xtask setup`: every step, with its line.
pub fn run(scope: Scope) -> anyhow::Result<Env> {
    let started = Instant::now();
    for step in steps(scope) {
        run_step(step)?;
    }
    println!("setup: machine ready ({:.1}s)", started.elapsed().as_secs_f64());
    Ok(env())
}

/// The same checks, run quietly before every other command; only missing things are
/// installed (and only those print a line).
pub fn ensure(scope: Scope) -> anyhow::Result<Env> {
    for step in steps(scope) {
        match (step.check)() {
            Ok(Some(_)) => {}
            _ => run_step(step)?,
        }
    }
    Ok(env())
}

fn env() -> Env {
    Env {
        ort_lib: Path::new(ORT_DIR).join(format!("libonnxruntime.so.{ORT_VERSION}")),
        ort_cuda_lib: Path::new(ORT_CUDA_DIR).join(format!("libonnxruntime.so.{ORT_VERSION}")),
    }
}

fn run_step(step: &Step) -> anyhow::Result<()> {
    match (step.check)() {
        Ok(Some(detail)) => {
            println!("[ok]        {}: {detail}", step.name);
            return Ok(());
        }
        Ok(None) => {}
        Err(e) => println!("[check]     {}: {e:#}; installing", step.name),
    }
    let t = Instant::now();
    match (step.install)() {
        Ok(done) => {
            // Trust, but verify: the check must pass now.
            match (step.check)() {
                Ok(Some(_)) => {
                    println!(
                        "[installed] {}: {done} ({:.0}s)",
                        step.name,
                        t.elapsed().as_secs_f64()
                    );
                    Ok(())
                }
                other => fail(step, &format!("installed, but the check still fails: {other:?}")),
            }
        }
        Err(e) => fail(step, &format!("{e:#}")),
    }
}

fn fail(step: &Step, why: &str) -> anyhow::Result<()> {
    println!("[failed]    {}: {why}", step.name);
    println!("            run by hand: {}", step.manual);
    bail!(
        "setup step `{}` failed: {why}. Run by hand: {}",
        step.name,
        step.manual
    )
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

fn need_root(what: &str) -> anyhow::Result<()> {
    if !is_root() {
        bail!("{what} needs root; run `sudo -E cargo xtask setup`");
    }
    Ok(())
}

fn missing_debs(packages: &[&'static str]) -> Vec<&'static str> {
    packages
        .iter()
        .copied()
        .filter(|p| {
            cmd::output(cmd::new("dpkg-query", &["-W", "-f=${Status}", p]))
                .map(|s| s.trim() != "install ok installed")
                .unwrap_or(true)
        })
        .collect()
}

fn check_debs(packages: &[&'static str]) -> anyhow::Result<Option<String>> {
    Ok(missing_debs(packages)
        .is_empty()
        .then(|| format!("{} installed", packages.join(", "))))
}

/// `apt-get install` of those of `packages` that are missing.
pub fn install_debs(packages: &[&'static str]) -> anyhow::Result<String> {
    need_root("installing Debian packages")?;
    let missing = missing_debs(packages);
    let mut update = cmd::new("apt-get", &["update", "-qq"]);
    update.env("DEBIAN_FRONTEND", "noninteractive");
    cmd::output(update)?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(&missing);
    let mut install = cmd::new("apt-get", &args);
    install.env("DEBIAN_FRONTEND", "noninteractive");
    cmd::output(install)?;
    Ok(format!("apt-get installed {}", missing.join(", ")))
}

/// [`install_debs`] with the host's services held down: the corpus installs servers (sshd,
/// vsftpd) whose packages would otherwise start them on the host. The recorder runs its own
/// copies inside lab namespaces, so a `policy-rc.d` that forbids starting services is put in
/// place for the install when the machine has none (and removed afterwards).
fn install_debs_without_services(packages: &[&'static str]) -> anyhow::Result<String> {
    need_root("installing Debian packages")?;
    let policy = Path::new(POLICY_RC_D);
    if policy.exists() {
        return install_debs(packages);
    }
    fs::write(
        policy,
        "#!/bin/sh\n# cargo xtask setup --corpus: no service starts during the install\nexit 101\n",
    )
    .with_context(|| format!("writing {POLICY_RC_D}"))?;
    let done = fs::set_permissions(policy, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .with_context(|| format!("making {POLICY_RC_D} executable"))
        .and_then(|()| install_debs(packages));
    let removed =
        fs::remove_file(policy).with_context(|| format!("removing {POLICY_RC_D} after the install"));
    let done = done?;
    removed?;
    Ok(format!("{done} (services not started)"))
}

fn check_nightly() -> anyhow::Result<Option<String>> {
    let Ok(comps) = cmd::output(cmd::new(
        "rustup",
        &["component", "list", "--toolchain", "nightly", "--installed"],
    )) else {
        return Ok(None);
    };
    if !comps.lines().any(|l| l.starts_with("rust-src")) {
        return Ok(None);
    }
    let v = cmd::output(cmd::new("rustc", &["+nightly", "--version"]))?;
    Ok(Some(format!("{} + rust-src", v.trim())))
}

fn install_nightly() -> anyhow::Result<String> {
    let has_nightly = cmd::output(cmd::new("rustup", &["toolchain", "list"]))
        .map(|s| s.lines().any(|l| l.starts_with("nightly")))
        .unwrap_or(false);
    if has_nightly {
        cmd::output(cmd::new(
            "rustup",
            &["component", "add", "rust-src", "--toolchain", "nightly"],
        ))?;
        Ok("rustup added rust-src to nightly".into())
    } else {
        cmd::output(cmd::new(
            "rustup",
            &[
                "toolchain",
                "install",
                "nightly",
                "--profile",
                "minimal",
                "--component",
                "rust-src",
            ],
        ))?;
        Ok("rustup installed nightly with rust-src".into())
    }
}

fn check_bpf_linker() -> anyhow::Result<Option<String>> {
    Ok(cmd::output(cmd::new("bpf-linker", &["--version"]))
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| v.contains(BPF_LINKER_VERSION)))
}

fn install_bpf_linker() -> anyhow::Result<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    println!("[running]   bpf-linker: building against LLVM 22 (about 3 minutes)");
    let mut c = cmd::new(
        &cargo,
        &[
            "install",
            &format!("bpf-linker@{BPF_LINKER_VERSION}"),
            "--no-default-features",
            "--features",
            "llvm-22",
            "--force",
        ],
    );
    // Not from the workspace: its rust-toolchain/config must not apply.
    c.current_dir(std::env::temp_dir())
        .env("LLVM_PREFIX", LLVM_PREFIX);
    cmd::output(c)?;
    Ok(format!(
        "cargo installed bpf-linker {BPF_LINKER_VERSION} (LLVM 22)"
    ))
}

fn check_ort() -> anyhow::Result<Option<String>> {
    let lib = env().ort_lib;
    Ok(is_library(&lib).then(|| format!("{}", lib.display())))
}

fn check_ort_cuda() -> anyhow::Result<Option<String>> {
    let lib = env().ort_cuda_lib;
    let provider = Path::new(ORT_CUDA_DIR).join("libonnxruntime_providers_cuda.so");
    Ok((is_library(&lib) && is_library(&provider)).then(|| format!("{}", lib.display())))
}

/// An ELF file over 1 MB (reads 4 bytes: this check runs before every command, and the CUDA
/// provider is 284 MB).
fn is_library(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    fs::metadata(path).is_ok_and(|m| m.len() > 1_000_000)
        && fs::File::open(path)
            .and_then(|mut f| f.read_exact(&mut magic))
            .is_ok()
        && &magic == b"\x7fELF"
}

fn install_ort() -> anyhow::Result<String> {
    install_ort_wheel("onnxruntime", ORT_DIR)
}

fn install_ort_cuda() -> anyhow::Result<String> {
    install_ort_wheel("onnxruntime-gpu", ORT_CUDA_DIR)
}

/// Extracts `onnxruntime/capi/libonnxruntime*.so*` of the PyPI wheel `package` into `dir`.
fn install_ort_wheel(package: &str, dir: &str) -> anyhow::Result<String> {
    need_root(&format!("installing ONNX Runtime ({package}) into {dir}"))?;
    let tmp = std::env::temp_dir().join(format!("netanom-ort-{}-{package}", std::process::id()));
    fs::create_dir_all(&tmp)?;
    let wheel_dir = tmp.to_string_lossy().into_owned();
    cmd::output(cmd::new(
        "python3",
        &[
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            &format!("{package}=={ORT_VERSION}"),
            "-d",
            &wheel_dir,
        ],
    ))
    .with_context(|| format!("downloading the {package} wheel from PyPI"))?;
    fs::create_dir_all(dir)?;
    // The wheel is a zip; Python's zipfile avoids needing `unzip`.
    let stem = package.replace('-', "_");
    let script = format!(
        "import glob, zipfile, os\n\
         w = glob.glob(os.path.join({wheel_dir:?}, '{stem}-{ORT_VERSION}-*.whl'))[0]\n\
         z = zipfile.ZipFile(w)\n\
         for n in z.namelist():\n\
         \x20   b = os.path.basename(n)\n\
         \x20   if n.startswith('onnxruntime/capi/') and b.startswith('libonnxruntime') and '.so' in b:\n\
         \x20       open(os.path.join({dir:?}, b), 'wb').write(z.read(n))\n\
         \x20       print(b)\n"
    );
    let files = cmd::output(cmd::new("python3", &["-c", &script]))?;
    let _ = fs::remove_dir_all(&tmp);
    Ok(format!(
        "extracted {} from the {package}=={ORT_VERSION} wheel into {dir}",
        files.split_whitespace().collect::<Vec<_>>().join(", ")
    ))
}

fn check_bpffs() -> anyhow::Result<Option<String>> {
    let mounts = fs::read_to_string("/proc/mounts")?;
    Ok(mounts
        .lines()
        .any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 2 && f[1] == BPFFS && f[2] == "bpf"
        })
        .then(|| "mounted".into()))
}

fn mount_bpffs() -> anyhow::Result<String> {
    need_root("mounting bpffs")?;
    cmd::output(cmd::new("mount", &["-t", "bpf", "bpf", BPFFS]))?;
    Ok(format!("mounted bpffs at {BPFFS}"))
}
