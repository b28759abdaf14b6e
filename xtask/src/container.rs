//! `cargo xtask test --container`: builds deploy/container/Containerfile with podman and runs
//! the agent from the image's filesystem in the lab (tests/tests/container.rs).
//!
//! No image registry is reachable here, so the images the Containerfile starts from are made
//! locally: `docker.io/library/debian:12-slim` by mmdebstrap (Debian's minbase with the slim
//! image's dpkg excludes), and, for the build stage, a stand-in for the official
//! `rust:1.95-bookworm` (rustup with stable Rust at /usr/local/{rustup,cargo}) from the same
//! Debian base and this machine's toolchains (stable, and nightly with rust-src, which the
//! build stage's setup would otherwise download). Both are made once and kept.
use std::{
    fs,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::cmd;

const DEBIAN_IMAGE: &str = "docker.io/library/debian:12-slim";
const OFFICIAL_RUST_IMAGE: &str = "docker.io/library/rust:1.95-bookworm";
const LOCAL_RUST_IMAGE: &str = "localhost/netanom-rust:1.95-bookworm";
const CONTAINERFILE: &str = "deploy/container/Containerfile";
const IGNOREFILE: &str = "deploy/container/Containerfile.dockerignore";
/// The debian:12-slim image's dpkg filters (docs, man pages, locales), so that the local
/// base and the image size resemble the real one.
const SLIM_EXCLUDES: &[&str] = &[
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/groff/*",
    "path-exclude=/usr/share/lintian/*",
    "path-exclude=/usr/share/linda/*",
];
const DEBIAN_SOURCES: &[&str] = &[
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
];

fn work_dir() -> PathBuf {
    cmd::root().join("target/container")
}

fn podman(args: &[&str]) -> std::process::Command {
    cmd::new("podman", args)
}

fn image_exists(name: &str) -> bool {
    podman(&["image", "exists", name])
        .status()
        .is_ok_and(|s| s.success())
}

/// The agent's version (the workspace's), for the tag and the OCI labels.
fn version() -> anyhow::Result<String> {
    let manifest = fs::read_to_string(cmd::root().join("Cargo.toml"))?;
    manifest
        .lines()
        .skip_while(|l| l.trim() != "[workspace.package]")
        .find_map(|l| l.strip_prefix("version = "))
        .map(|v| v.trim_matches('"').to_owned())
        .context("no version in [workspace.package] of Cargo.toml")
}

/// mmdebstrap's minbase bookworm as `path` (a tar of the root filesystem).
fn debian_tar(path: &Path) -> anyhow::Result<()> {
    if path.is_file() {
        return Ok(());
    }
    if path.is_dir() {
        // A directory tree left by an earlier version of this function (see below).
        fs::remove_dir_all(path)?;
    }
    // mmdebstrap picks its output format from the name unless told: `--format=tar`, or a
    // `.partial` target becomes a directory tree.
    let tmp = path.with_extension("partial.tar");
    let mut args: Vec<String> = vec![
        "--quiet".into(),
        "--variant=minbase".into(),
        "--format=tar".into(),
    ];
    args.extend(SLIM_EXCLUDES.iter().map(|e| format!("--dpkgopt={e}")));
    args.push("bookworm".into());
    args.push(tmp.to_string_lossy().into_owned());
    args.extend(DEBIAN_SOURCES.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    cmd::status(cmd::new("mmdebstrap", &refs))?;
    fs::rename(&tmp, path)?;
    Ok(())
}

/// `docker.io/library/debian:12-slim`, made locally when it is not there.
fn ensure_debian(dir: &Path) -> anyhow::Result<()> {
    if image_exists(DEBIAN_IMAGE) {
        return Ok(());
    }
    let tar = dir.join("debian-12-slim.tar");
    debian_tar(&tar)?;
    let tar = tar.to_string_lossy();
    cmd::status(podman(&[
        "import",
        "--change",
        "CMD [\"bash\"]",
        &tar,
        DEBIAN_IMAGE,
    ]))?;
    println!("made {DEBIAN_IMAGE} with mmdebstrap (minbase bookworm)");
    Ok(())
}

/// The build stage's image: $NETANOM_RUST_IMAGE, the official rust image if it is here, or a
/// local stand-in made from the Debian base and this machine's rustup toolchains.
fn ensure_rust_image(dir: &Path) -> anyhow::Result<String> {
    if let Ok(name) = std::env::var("NETANOM_RUST_IMAGE") {
        return Ok(name);
    }
    for name in [OFFICIAL_RUST_IMAGE, LOCAL_RUST_IMAGE] {
        if image_exists(name) {
            return Ok(name.to_owned());
        }
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let rustup = std::env::var("RUSTUP_HOME").unwrap_or_else(|_| format!("{home}/.rustup"));
    let cargo = std::env::var("CARGO_HOME").unwrap_or_else(|_| format!("{home}/.cargo"));
    let base = dir.join("debian-12-slim.tar");
    debian_tar(&base)?;
    let tar = dir.join("netanom-rust.tar");
    fs::copy(&base, &tar)?;
    let t = tar.to_string_lossy().into_owned();
    let toolchains = [
        "stable-x86_64-unknown-linux-gnu",
        "nightly-x86_64-unknown-linux-gnu",
    ];
    let mut add = vec![
        "-rf",
        &t,
        "-C",
        &rustup,
        "--exclude=share/doc",
        "--transform=s,^,usr/local/rustup/,S",
    ];
    let names: Vec<String> = toolchains.iter().map(|n| format!("toolchains/{n}")).collect();
    add.push("settings.toml");
    add.extend(names.iter().map(String::as_str));
    cmd::status(cmd::new("tar", &add))?;
    let proxies = [
        "rustup",
        "cargo",
        "rustc",
        "rustdoc",
        "rustfmt",
        "cargo-fmt",
        "cargo-clippy",
        "clippy-driver",
    ];
    let bins: Vec<String> = proxies.iter().map(|p| format!("bin/{p}")).collect();
    let mut add = vec!["-rf", &t, "-C", &cargo, "--transform=s,^,usr/local/cargo/,S"];
    add.extend(bins.iter().map(String::as_str));
    cmd::status(cmd::new("tar", &add))?;
    cmd::status(podman(&[
        "import",
        "--change",
        "ENV RUSTUP_HOME=/usr/local/rustup",
        "--change",
        "ENV CARGO_HOME=/usr/local/cargo",
        "--change",
        "ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "--change",
        "CMD [\"bash\"]",
        &t,
        LOCAL_RUST_IMAGE,
    ]))?;
    fs::remove_file(&tar)?;
    println!("made {LOCAL_RUST_IMAGE}: Debian 12 with this machine's stable and nightly Rust (rustup)");
    Ok(LOCAL_RUST_IMAGE.to_owned())
}

/// This machine's locally added CA certificates (PEM, concatenated): the build stage must
/// trust whatever this machine trusts on its way to crates.io and PyPI.
fn extra_ca_certs() -> anyhow::Result<String> {
    let mut pem = String::new();
    let Ok(dir) = fs::read_dir("/usr/local/share/ca-certificates") else {
        return Ok(pem);
    };
    let mut files: Vec<PathBuf> = dir
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "crt"))
        .collect();
    files.sort();
    for f in files {
        pem.push_str(fs::read_to_string(&f)?.trim());
        pem.push('\n');
    }
    Ok(pem)
}

/// What the test learns about the built image.
struct Built {
    image: String,
    seconds: f64,
    size_bytes: u64,
}

/// `podman build` of the Containerfile, offline (`--pull=never`), chroot isolation.
fn build_image(rust_image: &str) -> anyhow::Result<Built> {
    let version = version()?;
    let image = format!("localhost/netanom:{version}");
    let revision = cmd::output(cmd::new("git", &["rev-parse", "HEAD"]))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    let mut args = vec![
        "build".to_owned(),
        "--pull=never".into(),
        "--isolation=chroot".into(),
        "--format=docker".into(),
        format!("--file={CONTAINERFILE}"),
        format!("--ignorefile={IGNOREFILE}"),
        format!("--build-arg=RUST_IMAGE={rust_image}"),
        format!("--build-arg=VERSION={version}"),
        format!("--build-arg=REVISION={revision}"),
        format!("--tag={image}"),
    ];
    let extra = extra_ca_certs()?;
    if !extra.is_empty() {
        args.push(format!("--build-arg=EXTRA_CA_CERTS={extra}"));
    }
    args.push(".".into());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let started = Instant::now();
    cmd::status(podman(&refs))?;
    let seconds = started.elapsed().as_secs_f64();
    let size = cmd::output(podman(&["image", "inspect", "--format", "{{.Size}}", &image]))?;
    Ok(Built {
        image,
        seconds,
        size_bytes: size.trim().parse().context("podman image inspect: no size")?,
    })
}

/// The image's configuration (entrypoint, health check, labels) as `podman image inspect`
/// reports it; checked here, and handed to the lab test.
fn check_config(image: &str, path: &Path) -> anyhow::Result<()> {
    let text = cmd::output(podman(&["image", "inspect", image]))?;
    let v: Value = serde_json::from_str(&text)?;
    let config = &v[0]["Config"];
    let entrypoint = &config["Entrypoint"];
    if entrypoint != &serde_json::json!(["/usr/local/bin/netanom", "run"]) {
        bail!("the image's entrypoint is {entrypoint}, not `netanom run`");
    }
    // podman reports it beside Config; docker inside it.
    let health = [&v[0]["Healthcheck"], &config["Healthcheck"]]
        .into_iter()
        .find(|h| !h.is_null())
        .unwrap_or(&Value::Null);
    if health["Test"].as_array().is_none_or(|t| t.is_empty()) {
        bail!("the image has no HEALTHCHECK (build with --format docker): {v}");
    }
    let labels = config["Labels"].as_object().cloned().unwrap_or_default();
    for key in [
        "title",
        "version",
        "revision",
        "source",
        "licenses",
        "description",
    ] {
        let key = format!("org.opencontainers.image.{key}");
        if labels.get(&key).and_then(Value::as_str).is_none_or(str::is_empty) {
            bail!("OCI label {key} missing: {labels:?}");
        }
    }
    fs::write(path, serde_json::to_string_pretty(&v[0])?)?;
    Ok(())
}

/// The image's root filesystem, exported and unpacked into `rootfs` (made anew).
fn export_rootfs(image: &str, rootfs: &Path) -> anyhow::Result<()> {
    if rootfs.exists() {
        fs::remove_dir_all(rootfs)?;
    }
    fs::create_dir_all(rootfs)?;
    let name = format!("netanom-export-{}", std::process::id());
    cmd::output(podman(&["create", "--name", &name, image]))?;
    let tar = rootfs.with_extension("tar");
    let t = tar.to_string_lossy().into_owned();
    let exported = cmd::output(podman(&["export", "--output", &t, &name]));
    let _ = cmd::output(podman(&["rm", &name]));
    exported?;
    cmd::status(cmd::new("tar", &["-xf", &t, "-C", &rootfs.to_string_lossy()]))?;
    fs::remove_file(&tar)?;
    Ok(())
}

/// The runtime image holds the agent and its library, and no build tools.
fn check_contents(rootfs: &Path) -> anyhow::Result<()> {
    for needed in [
        "usr/local/bin/netanom",
        "usr/local/bin/netanom-healthcheck",
        "usr/local/lib/netanom/libonnxruntime.so.1.31.1",
        "etc/netanom/netanom.toml",
    ] {
        if !rootfs.join(needed).is_file() {
            bail!("the image lacks /{needed}");
        }
    }
    for unwanted in [
        "usr/local/cargo",
        "usr/local/rustup",
        "usr/bin/gcc",
        "usr/bin/python3",
        "src",
    ] {
        if rootfs.join(unwanted).exists() {
            bail!("the runtime image holds /{unwanted}, which only the build stage needs");
        }
    }
    Ok(())
}

/// `cargo xtask image`: makes the base images if needed, builds the image and checks its
/// configuration; returns it.
pub fn image() -> anyhow::Result<String> {
    let dir = work_dir();
    fs::create_dir_all(&dir)?;
    let t0 = Instant::now();
    ensure_debian(&dir)?;
    let rust_image = ensure_rust_image(&dir)?;
    let bases = t0.elapsed().as_secs_f64();
    let built = build_image(&rust_image)?;
    check_config(&built.image, &dir.join("image.json"))?;
    println!(
        "image: {} built in {:.0}s (base images {:.0}s), {:.1} MB (podman image inspect {{{{.Size}}}})",
        built.image,
        built.seconds,
        bases,
        built.size_bytes as f64 / 1e6
    );
    Ok(built.image)
}

/// Builds the image, checks it, and runs tests/tests/container.rs against its filesystem.
pub fn test(cargo: &str) -> anyhow::Result<()> {
    let image = image()?;
    let dir = work_dir();
    let rootfs = dir.join("rootfs");
    export_rootfs(&image, &rootfs)?;
    check_contents(&rootfs)?;
    let started = Instant::now();
    let mut t = cmd::new(
        cargo,
        &["test", "--package", "netanom-lab", "--test", "container"],
    );
    t.env("NETANOM_IMAGE_ROOTFS", &rootfs)
        .env("NETANOM_IMAGE_CONFIG", dir.join("image.json"));
    cmd::status(t)?;
    println!(
        "container: the agent ran from {image}'s filesystem in the lab ({:.0}s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
