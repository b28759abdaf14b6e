//! The deployment files under deploy/ and the checkers they are validated with: setup
//! installs the checkers into target/deploy-tools; `cargo xtask test` runs [`check_files`].
use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::Stdio,
};

use anyhow::{Context as _, bail};

use crate::cmd;

/// PyPI checkers (a virtualenv) and the Prometheus Operator's CRD schemas (npm), pinned.
const PIP_TOOLS: &[&str] = &["kubernetes-validate==1.37.0", "check-jsonschema==0.39.0"];
/// xtask/deploy-tools: package.json, its lock file and the CRD validator script.
const NPM_DIR: &str = "xtask/deploy-tools";
pub const TOOLS_MANUAL: &str = "python3 -m venv target/deploy-tools/venv && \
     target/deploy-tools/venv/bin/pip install kubernetes-validate==1.37.0 check-jsonschema==0.39.0 && \
     cp xtask/deploy-tools/package*.json target/deploy-tools/ && npm ci --prefix target/deploy-tools";
/// Kubernetes versions whose schemas the manifests must pass: the oldest we document, and
/// the newest kubernetes-validate ships.
const KUBERNETES_VERSIONS: &[&str] = &["1.29.0", "1.37.0"];

fn tools_dir() -> PathBuf {
    cmd::root().join("target/deploy-tools")
}

fn venv_bin(name: &str) -> PathBuf {
    tools_dir().join("venv/bin").join(name)
}

/// What the installed tools were made from: the pins and the npm lock file.
fn tools_stamp() -> anyhow::Result<String> {
    let lock = fs::read_to_string(cmd::root().join(NPM_DIR).join("package-lock.json"))
        .context("reading xtask/deploy-tools/package-lock.json")?;
    Ok(format!("{}\n{lock}", PIP_TOOLS.join("\n")))
}

/// Setup's check: the venv's tools and the npm packages exist and match the pins.
pub fn check_tools() -> anyhow::Result<Option<String>> {
    let stamp = fs::read_to_string(tools_dir().join("stamp")).unwrap_or_default();
    let ready = stamp == tools_stamp()?
        && venv_bin("kubernetes-validate").is_file()
        && venv_bin("check-jsonschema").is_file()
        && tools_dir()
            .join("node_modules/@kubernetes-models/prometheus-operator/package.json")
            .is_file();
    Ok(ready.then(|| {
        format!(
            "{}, npm @kubernetes-models/prometheus-operator in {}",
            PIP_TOOLS.join(", "),
            tools_dir().display()
        )
    }))
}

/// Setup's install: a virtualenv with the PyPI checkers, `npm ci` of the CRD schemas.
pub fn install_tools() -> anyhow::Result<String> {
    let dir = tools_dir();
    let _ = fs::remove_file(dir.join("stamp"));
    fs::create_dir_all(&dir)?;
    let venv = dir.join("venv");
    if !venv_bin("pip").is_file() {
        cmd::output(cmd::new("python3", &["-m", "venv", &venv.to_string_lossy()]))
            .context("creating the checkers' virtualenv (Debian: apt-get install python3-venv)")?;
    }
    let mut pip = vec!["install", "--quiet", "--disable-pip-version-check"];
    pip.extend(PIP_TOOLS);
    cmd::output(cmd::new(&venv_bin("pip").to_string_lossy(), &pip))?;
    for f in ["package.json", "package-lock.json"] {
        fs::copy(cmd::root().join(NPM_DIR).join(f), dir.join(f))?;
    }
    cmd::output(cmd::new(
        "npm",
        &[
            "ci",
            "--silent",
            "--no-audit",
            "--no-fund",
            "--prefix",
            &dir.to_string_lossy(),
        ],
    ))
    .context("npm ci of xtask/deploy-tools (needs node and npm: apt-get install npm)")?;
    fs::write(dir.join("stamp"), tools_stamp()?)?;
    Ok(format!(
        "{} in a virtualenv, the Prometheus Operator's CRD schemas from npm",
        PIP_TOOLS.join(", ")
    ))
}

/// Kubernetes manifests validated by kubernetes-validate (kustomization.yaml and the
/// Prometheus Operator's resources have no Kubernetes schema).
const KUBERNETES_CORE: &[&str] = &[
    "deploy/kubernetes/namespace.yaml",
    "deploy/kubernetes/configmap.yaml",
    "deploy/kubernetes/daemonset.yaml",
    "deploy/kubernetes/service.yaml",
];
/// Prometheus Operator resources, validated against its CRD schemas: the ServiceMonitor, and
/// the PrometheusRule the script makes from the alert rules.
const KUBERNETES_OPERATOR: &[&str] = &["deploy/kubernetes/servicemonitor.yaml"];
const PROMETHEUS_RULE_SCRIPT: &str = "deploy/kubernetes/prometheusrule.sh";

fn tool(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Runs `c`; on failure, bails with its whole output and `what`.
fn checked(what: &str, mut c: std::process::Command) -> anyhow::Result<String> {
    let out = c
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not start the checker for {what}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!("{what}: {}\n{}", out.status, text.trim());
    }
    println!("[ok] {what}");
    Ok(text)
}

/// kubernetes-validate --strict (unknown fields rejected) for every version in
/// [`KUBERNETES_VERSIONS`]; a resource it has no schema for fails too.
fn check_kubernetes() -> anyhow::Result<()> {
    for version in KUBERNETES_VERSIONS {
        let mut args = vec!["--strict", "--kubernetes-version", version];
        args.extend(KUBERNETES_CORE);
        let c = cmd::new(&tool(&venv_bin("kubernetes-validate")), &args);
        let out = checked(&format!("kubernetes-validate --strict, Kubernetes {version}"), c)?;
        if let Some(warn) = out.lines().find(|l| l.starts_with("WARN")) {
            bail!("kubernetes-validate could not check everything: {warn}");
        }
    }
    // The CRD validator reads JSON; the venv's PyYAML turns the YAML into it.
    let script = "import json, sys, yaml\n\
        print(json.dumps([{'file': f, 'doc': d} for f in sys.argv[1:] \
        for d in yaml.safe_load_all(open(f)) if d]))";
    let rule = tools_dir().join("prometheusrule.yaml");
    fs::write(&rule, cmd::output(cmd::new("sh", &[PROMETHEUS_RULE_SCRIPT]))?)?;
    let rule = tool(&rule);
    let mut args = vec!["-c", script];
    args.extend(KUBERNETES_OPERATOR);
    args.push(&rule);
    let docs = cmd::output(cmd::new(&tool(&venv_bin("python")), &args))?;
    // Beside its node_modules: ES modules resolve imports from the script's directory.
    let validator = tools_dir().join("validate-crs.mjs");
    fs::copy(cmd::root().join(NPM_DIR).join("validate-crs.mjs"), &validator)?;
    let mut node = cmd::new("node", &[&tool(&validator)]);
    node.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = node.spawn().context("could not start node")?;
    child
        .stdin
        .take()
        .context("no stdin")?
        .write_all(docs.as_bytes())?;
    let out = child.wait_with_output()?;
    let report = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!(
            "Prometheus Operator resources against the operator's CRD schemas:\n{}",
            report.trim()
        );
    }
    println!(
        "[ok] Prometheus Operator resources against its CRD schemas: {}",
        report.lines().count()
    );
    Ok(())
}

/// Everything under deploy/ that a tool can check without a cluster or a container: the
/// Kubernetes and Compose schemas, the Prometheus configuration, the alert rules and their
/// unit tests. (The ConfigMap's TOML, the cross-file consistency and the dashboard are
/// checked by tests/tests/deploy.rs; the dashboard's and rules' queries against a real
/// Prometheus by tests/tests/deploy_lab.rs.)
pub fn check_files() -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    check_kubernetes()?;
    checked(
        "deploy/compose.yaml against the Compose specification",
        cmd::new(
            &tool(&venv_bin("check-jsonschema")),
            &["--builtin-schema", "vendor.compose-spec", "deploy/compose.yaml"],
        ),
    )?;
    checked(
        "promtool check config deploy/prometheus/prometheus.yml",
        cmd::new(
            "promtool",
            &["check", "config", "deploy/prometheus/prometheus.yml"],
        ),
    )?;
    checked(
        "promtool check rules deploy/prometheus/netanom-rules.yml",
        cmd::new(
            "promtool",
            &["check", "rules", "deploy/prometheus/netanom-rules.yml"],
        ),
    )?;
    checked(
        "promtool test rules deploy/prometheus/netanom-rules.test.yml",
        cmd::new(
            "promtool",
            &["test", "rules", "deploy/prometheus/netanom-rules.test.yml"],
        ),
    )?;
    println!(
        "deployment files checked in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
