//! The deployment files under deploy/, checked without root, a cluster or a container: the
//! Kubernetes ConfigMap's TOML through the agent's own configuration loader, the manifests
//! against each other and against the agent (capabilities, ports, paths, memory), the
//! Compose stack against the files it mounts, and the Grafana dashboard against Grafana's
//! dashboard JSON model. Their schemas are checked by `cargo xtask test` (kubernetes-validate,
//! check-jsonschema, promtool); their queries against a real Prometheus by deploy_lab.rs.
use std::collections::{BTreeMap, BTreeSet};

use netanom::{datapath::LoadOptions, pipeline::config::Config, respond::Mode, sinks::alerts::AlertTarget};
use netanom_lab::deploy::{
    BUILTINS, DASHBOARD, all_panels, dashboard, expand, panel_queries, read, repo_file, string, strings,
    yaml, yaml_docs,
};
use serde_json::Value;
use yaml_rust2::Yaml;

const CONFIGMAP: &str = "deploy/kubernetes/configmap.yaml";
const DAEMONSET: &str = "deploy/kubernetes/daemonset.yaml";
const SERVICE: &str = "deploy/kubernetes/service.yaml";
const SERVICEMONITOR: &str = "deploy/kubernetes/servicemonitor.yaml";
const COMPOSE: &str = "deploy/compose.yaml";
/// What XDP needs, and all the container gets (README, systemd unit, Containerfile).
const CAPABILITIES: [&str; 4] = ["BPF", "NET_ADMIN", "PERFMON", "SYS_RESOURCE"];
/// The agent's resident memory from `cargo xtask bench` (README Benchmarks, 54 MiB), rounded up.
const AGENT_RSS_BYTES: u64 = 64 << 20;

/// The ConfigMap's `netanom.toml`, parsed by the agent's loader.
fn configmap_config() -> (String, Config) {
    let cm = yaml(CONFIGMAP);
    let text = string(&cm["data"]["netanom.toml"], "ConfigMap data.netanom.toml").to_owned();
    let cfg = Config::parse(&text, "deploy/kubernetes/configmap.yaml: netanom.toml")
        .unwrap_or_else(|e| panic!("the agent refuses the ConfigMap's TOML: {e}"));
    (text, cfg)
}

#[test]
fn configmap_toml_is_accepted_by_the_agents_own_loader() {
    let (text, cfg) = configmap_config();
    assert_eq!(cfg.agent.mode, Mode::Observe, "start in observe mode");
    assert_eq!(
        cfg.agent.alerts,
        AlertTarget::Stdout,
        "alerts in the container log"
    );
    assert!(cfg.agent.pin_dir.starts_with(&cfg.agent.bpffs));
    // The loader is strict: the same text with a typo is refused, naming the key.
    let typo = text.replace("[metrics]\n", "[metrics]\nenabeld = true\n");
    let err = Config::parse(&typo, "typo").expect_err("an unknown key must be refused");
    assert!(err.to_string().contains("enabeld"), "{err}");
}

/// The DaemonSet's one container.
fn container(ds: &Yaml) -> &Yaml {
    let cs = ds["spec"]["template"]["spec"]["containers"]
        .as_vec()
        .expect("containers");
    assert_eq!(cs.len(), 1, "one container");
    &cs[0]
}

/// The value after `flag` in the container's args.
fn arg<'a>(args: &'a [String], flag: &str) -> &'a str {
    let i = args
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("no {flag} in {args:?}"));
    &args[i + 1]
}

/// The volume mounted at `path` and the volume definition it names.
fn mounted<'a>(ds: &'a Yaml, path: &str) -> &'a Yaml {
    let mounts = container(ds)["volumeMounts"].as_vec().expect("volumeMounts");
    let m = mounts
        .iter()
        .find(|m| m["mountPath"].as_str() == Some(path))
        .unwrap_or_else(|| panic!("nothing mounted at {path}"));
    let vols = ds["spec"]["template"]["spec"]["volumes"]
        .as_vec()
        .expect("volumes");
    vols.iter()
        .find(|v| v["name"] == m["name"])
        .unwrap_or_else(|| panic!("no volume {:?}", m["name"]))
}

#[test]
fn daemonset_runs_the_agent_with_host_networking_bpffs_and_only_the_xdp_capabilities() {
    let ds = yaml(DAEMONSET);
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"].as_bool(), Some(true));
    assert!(
        pod["nodeSelector"].as_hash().is_some_and(|h| !h.is_empty()),
        "a node selector for gateways"
    );
    let c = container(&ds);
    let sc = &c["securityContext"];
    assert_eq!(sc["privileged"].as_bool(), Some(false));
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(strings(&sc["capabilities"]["drop"], "drop"), ["ALL"]);
    let added: BTreeSet<String> = strings(&sc["capabilities"]["add"], "add").into_iter().collect();
    assert_eq!(added, CAPABILITIES.iter().map(|c| c.to_string()).collect());

    let bpffs = mounted(&ds, "/sys/fs/bpf");
    assert_eq!(bpffs["hostPath"]["path"].as_str(), Some("/sys/fs/bpf"));

    // --config names the file the ConfigMap volume provides, and the agent's own paths live
    // where the DaemonSet gives it storage.
    let args = strings(&c["args"], "args");
    let config = arg(&args, "--config");
    let (dir, file) = config.rsplit_once('/').expect("an absolute path");
    let cm_volume = mounted(&ds, dir);
    let cm = yaml(CONFIGMAP);
    assert_eq!(cm_volume["configMap"]["name"], cm["metadata"]["name"]);
    assert!(!cm["data"][file].is_badvalue(), "the ConfigMap has no key {file}");
    let (_, cfg) = configmap_config();
    assert!(!mounted(&ds, &cfg.agent.state_dir.to_string_lossy())["emptyDir"].is_badvalue());
    assert!(cfg.agent.pin_dir.starts_with("/sys/fs/bpf"));
    assert_eq!(cfg.agent.bpffs, std::path::Path::new("/sys/fs/bpf"));
}

#[test]
fn daemonset_probes_service_and_servicemonitor_agree_on_the_metrics_endpoint() {
    let ds = yaml(DAEMONSET);
    let c = container(&ds);
    let args = strings(&c["args"], "args");
    let addr = arg(&args, "--metrics-addr");
    let (_, port) = addr.rsplit_once(':').expect("ADDRESS:PORT");
    let ports = c["ports"].as_vec().expect("ports");
    let metrics = ports
        .iter()
        .find(|p| p["name"].as_str() == Some("metrics"))
        .expect("a port named metrics");
    assert_eq!(
        metrics["containerPort"]
            .as_i64()
            .map(|p| p.to_string())
            .as_deref(),
        Some(port)
    );
    // The address is the node's (the downward API), which a hostNetwork pod's probes reach.
    let env = c["env"].as_vec().expect("env");
    let var = addr
        .strip_prefix("$(")
        .and_then(|a| a.split_once(')'))
        .map(|(v, _)| v)
        .expect("$(VAR):PORT");
    let node_ip = env
        .iter()
        .find(|e| e["name"].as_str() == Some(var))
        .expect("the address variable");
    assert_eq!(
        node_ip["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
        Some("status.hostIP")
    );
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some("/metrics"), "{probe}");
        assert_eq!(get["port"].as_str(), Some("metrics"), "{probe}");
    }

    let pod_labels = ds["spec"]["template"]["metadata"]["labels"]
        .as_hash()
        .expect("pod labels");
    let svc = yaml(SERVICE);
    for (k, v) in svc["spec"]["selector"].as_hash().expect("Service selector") {
        assert_eq!(pod_labels.get(k), Some(v), "the Service selects the agent's pods");
    }
    let svc_port = &svc["spec"]["ports"][0];
    assert_eq!(svc_port["targetPort"].as_str(), Some("metrics"));
    let sm = yaml(SERVICEMONITOR);
    let svc_labels = svc["metadata"]["labels"].as_hash().expect("Service labels");
    for (k, v) in sm["spec"]["selector"]["matchLabels"]
        .as_hash()
        .expect("ServiceMonitor selector")
    {
        assert_eq!(
            svc_labels.get(k),
            Some(v),
            "the ServiceMonitor selects the Service"
        );
    }
    assert_eq!(sm["spec"]["endpoints"][0]["port"], svc_port["name"]);
    assert_eq!(
        strings(&sm["spec"]["namespaceSelector"]["matchNames"], "matchNames"),
        [string(&svc["metadata"]["namespace"], "ns")]
    );
    // The job label Prometheus Operator gives the series is the Service's name: the one the
    // alert rules and the dashboard select.
    assert_eq!(svc["metadata"]["name"].as_str(), Some("netanom"));
}

/// Kubernetes quantity (`256Mi`, `1Gi`, `512M`) in bytes.
fn bytes(q: &str) -> u64 {
    let split = q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len());
    let n: u64 = q[..split].parse().unwrap_or_else(|_| panic!("quantity {q}"));
    n * match &q[split..] {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        other => panic!("unit {other} in {q}"),
    }
}

#[test]
fn daemonset_memory_covers_the_agent_and_the_kernel_maps_it_is_charged_for() {
    let ds = yaml(DAEMONSET);
    let r = &container(&ds)["resources"];
    let (_, cfg) = configmap_config();
    let d = &cfg.datapath;
    let maps = LoadOptions {
        flow_entries: d.flow_table_size,
        src_entries: d.src_table_size,
        dst_entries: d.dst_table_size,
        export_ring_bytes: d.export_ring_bytes,
        ..LoadOptions::default()
    }
    .memory_estimate();
    let request = bytes(string(&r["requests"]["memory"], "memory request"));
    let limit = bytes(string(&r["limits"]["memory"], "memory limit"));
    assert!(
        request >= AGENT_RSS_BYTES + maps,
        "memory request {request} < agent {AGENT_RSS_BYTES} + maps {maps} (BPF maps are charged to the pod's memory cgroup)"
    );
    assert!(limit >= request, "limit {limit} < request {request}");
    assert!(!r["requests"]["cpu"].is_badvalue() && !r["limits"]["cpu"].is_badvalue());
    let grace = ds["spec"]["template"]["spec"]["terminationGracePeriodSeconds"].as_i64();
    assert!(
        grace.is_some_and(|g| g >= 10),
        "terminationGracePeriodSeconds: {grace:?}"
    );
}

#[test]
fn kustomization_lists_every_manifest_but_the_servicemonitor_and_all_share_the_namespace() {
    let k = yaml("deploy/kubernetes/kustomization.yaml");
    let listed: BTreeSet<String> = strings(&k["resources"], "resources").into_iter().collect();
    let on_disk: BTreeSet<String> = std::fs::read_dir(repo_file("deploy/kubernetes"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml" && n != "servicemonitor.yaml")
        .collect();
    assert_eq!(listed, on_disk);
    let ns = yaml("deploy/kubernetes/namespace.yaml");
    let name = string(&ns["metadata"]["name"], "namespace");
    for f in on_disk
        .iter()
        .filter(|f| *f != "namespace.yaml")
        .map(|f| format!("deploy/kubernetes/{f}"))
        .chain([SERVICEMONITOR.to_owned()])
    {
        for doc in yaml_docs(&f) {
            assert_eq!(doc["metadata"]["namespace"].as_str(), Some(name), "{f}");
        }
    }
}

/// The YAML file a Compose bind mount at `target` provides.
fn bind_yaml(binds: &BTreeMap<String, String>, target: &str) -> Yaml {
    let src = binds
        .get(target)
        .unwrap_or_else(|| panic!("nothing mounted at {target}"));
    yaml(&format!("deploy/{}", src.trim_start_matches("./")))
}

/// A service of the Compose file.
fn service<'a>(compose: &'a Yaml, name: &str) -> &'a Yaml {
    let s = &compose["services"][name];
    assert!(!s.is_badvalue(), "{COMPOSE} has no service {name}");
    s
}

/// `SOURCE:TARGET[:ro]` bind mounts of a service whose source is a path, by target.
fn binds(svc: &Yaml) -> BTreeMap<String, String> {
    strings(&svc["volumes"], "volumes")
        .into_iter()
        .filter(|v| v.starts_with('.') || v.starts_with('/'))
        .map(|v| {
            let mut parts = v.split(':');
            let (src, dst) = (parts.next().unwrap(), parts.next().expect("SOURCE:TARGET"));
            (dst.to_owned(), src.to_owned())
        })
        .collect()
}

#[test]
fn compose_stack_mounts_files_that_exist_and_wires_agent_prometheus_and_grafana() {
    let compose = yaml(COMPOSE);
    // Every relative bind source exists beside the Compose file.
    for svc in ["netanom", "prometheus", "grafana"] {
        for (target, src) in binds(service(&compose, svc)) {
            if let Some(rel) = src.strip_prefix("./") {
                assert!(
                    repo_file(&format!("deploy/{rel}")).exists(),
                    "{svc}: {src} (for {target}) missing"
                );
            }
        }
    }
    let agent = service(&compose, "netanom");
    assert_eq!(agent["network_mode"].as_str(), Some("host"));
    assert_eq!(strings(&agent["cap_drop"], "cap_drop"), ["ALL"]);
    assert_eq!(strings(&agent["cap_add"], "cap_add"), CAPABILITIES);
    assert!(agent["privileged"].is_badvalue() || agent["privileged"].as_bool() == Some(false));
    let agent_binds = binds(agent);
    assert_eq!(
        agent_binds.get("/sys/fs/bpf").map(String::as_str),
        Some("/sys/fs/bpf")
    );
    let command = strings(&agent["command"], "command");
    let config = arg(&command, "--config");
    let src = agent_binds
        .get(config)
        .unwrap_or_else(|| panic!("--config {config} is not mounted"));
    Config::parse(&read(&format!("deploy/{}", src.trim_start_matches("./"))), src)
        .expect("the agent accepts it");
    let build = &agent["build"];
    let dockerfile = string(&build["dockerfile"], "build.dockerfile");
    assert_eq!(build["context"].as_str(), Some(".."));
    assert!(repo_file(dockerfile).is_file(), "{dockerfile}");

    // Prometheus scrapes the agent's default address (the agent runs without --metrics-addr)
    // as job netanom, with the rule file beside its configuration.
    let prom = service(&compose, "prometheus");
    let prom_binds = binds(prom);
    let prom_cfg = bind_yaml(&prom_binds, "/etc/prometheus/prometheus.yml");
    let job = &prom_cfg["scrape_configs"][0];
    assert_eq!(job["job_name"].as_str(), Some("netanom"));
    assert_eq!(
        strings(&job["static_configs"][0]["targets"], "targets"),
        [netanom::sinks::metrics::DEFAULT_ADDR]
    );
    for rule_file in strings(&prom_cfg["rule_files"], "rule_files") {
        assert!(
            prom_binds.contains_key(&format!("/etc/prometheus/{rule_file}")),
            "{rule_file} not mounted"
        );
    }
    let listen = strings(&prom["command"], "command")
        .into_iter()
        .find_map(|a| a.strip_prefix("--web.listen-address=").map(str::to_owned))
        .expect("--web.listen-address");

    // Grafana: the data source points at that Prometheus with the uid the dashboard's data
    // source variable defaults to, and the dashboard provider reads the mounted dashboard.
    let grafana = service(&compose, "grafana");
    let g = binds(grafana);
    let ds_file = bind_yaml(&g, "/etc/grafana/provisioning/datasources/netanom.yml");
    let source = &ds_file["datasources"][0];
    assert_eq!(source["url"].as_str(), Some(format!("http://{listen}").as_str()));
    let dash = dashboard();
    let var = dash["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["type"] == "datasource")
        .expect("a data source variable");
    assert_eq!(
        Some(var["current"]["value"].as_str().unwrap()),
        source["uid"].as_str()
    );
    let provider = bind_yaml(&g, "/etc/grafana/provisioning/dashboards/netanom.yml");
    let dir = string(&provider["providers"][0]["options"]["path"], "provider path");
    let (mounted_at, src) = g
        .iter()
        .find(|(_, s)| s.ends_with("grafana/netanom.json"))
        .expect("dashboard mounted");
    assert!(
        mounted_at.starts_with(&format!("{dir}/")),
        "{mounted_at} not under {dir}"
    );
    assert_eq!(src, &format!("./{}", DASHBOARD.trim_start_matches("deploy/")));
}

/// Panel types the dashboard may use (Grafana's built-in panel plugins), and whether they
/// show queried data.
const PANEL_TYPES: [(&str, bool); 5] = [
    ("row", false),
    ("timeseries", true),
    ("stat", true),
    ("table", true),
    ("state-timeline", true),
];

/// Grafana's dashboard schema at the top level (schemaVersion 39 = Grafana 11.x).
fn check_dashboard_top_level(d: &Value) {
    assert_eq!(d["schemaVersion"].as_u64(), Some(39));
    assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()));
    let uid = d["uid"].as_str().expect("uid");
    assert!(
        !uid.is_empty()
            && uid.len() <= 40
            && uid
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "{uid}"
    );
    assert!(d["id"].is_null(), "a provisioned dashboard has no database id");
    for (key, ok) in [
        ("panels", d["panels"].is_array()),
        ("templating.list", d["templating"]["list"].is_array()),
        (
            "time",
            d["time"]["from"].is_string() && d["time"]["to"].is_string(),
        ),
        ("tags", d["tags"].is_array()),
        ("editable", d["editable"].is_boolean()),
        ("refresh", d["refresh"].is_string()),
        ("annotations.list", d["annotations"]["list"].is_array()),
    ] {
        assert!(ok, "{DASHBOARD}: {key} missing or of the wrong type");
    }
}

/// The template variables; returns their names.
fn check_variables(d: &Value) -> Vec<String> {
    let vars = d["templating"]["list"].as_array().unwrap();
    let names: Vec<String> = vars
        .iter()
        .map(|v| v["name"].as_str().expect("variable name").to_owned())
        .collect();
    for v in vars {
        let ty = v["type"].as_str().unwrap();
        assert!(
            ["datasource", "query", "custom", "interval", "constant"].contains(&ty),
            "variable type {ty}"
        );
        if ty == "query" {
            assert_eq!(v["datasource"]["uid"], "${datasource}", "{}", v["name"]);
            assert!(
                v["query"]["query"]
                    .as_str()
                    .is_some_and(|q| q.starts_with("label_values("))
            );
        }
    }

    names
}

/// A panel's place on the 24-column grid, which no other panel may share.
fn check_grid(p: &Value, title: &str, cells: &mut BTreeMap<(u64, u64), String>) {
    let g = &p["gridPos"];
    let (x, y, w, h) = (g["x"].as_u64(), g["y"].as_u64(), g["w"].as_u64(), g["h"].as_u64());
    let (Some(x), Some(y), Some(w), Some(h)) = (x, y, w, h) else {
        panic!("{title}: gridPos needs integer x, y, w, h: {g}");
    };
    assert!(
        w >= 1 && h >= 1 && x + w <= 24,
        "{title}: gridPos {g} outside the 24 columns"
    );
    for cx in x..x + w {
        for cy in y..y + h {
            if let Some(other) = cells.insert((cx, cy), title.to_owned()) {
                panic!("panels \"{other}\" and \"{title}\" overlap at ({cx}, {cy})");
            }
        }
    }
}

/// One panel: id, type, place, data source, description, options and queries.
fn check_panel(p: &Value, ids: &mut BTreeSet<u64>, cells: &mut BTreeMap<(u64, u64), String>) {
    let title = p["title"].as_str().unwrap_or_default();
    assert!(!title.is_empty(), "a panel without a title: {p}");
    let id = p["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("{title}: no integer id"));
    assert!(ids.insert(id), "{title}: id {id} used twice");
    let ty = p["type"].as_str().unwrap_or_default();
    let shows_data = PANEL_TYPES
        .iter()
        .find(|(t, _)| *t == ty)
        .unwrap_or_else(|| panic!("{title}: panel type {ty} not one of {PANEL_TYPES:?}"))
        .1;
    check_grid(p, title, cells);
    if !shows_data {
        assert!(p["targets"].is_null(), "{title}: a row has no queries");
        return;
    }
    assert_eq!(
        p["datasource"]["uid"], "${datasource}",
        "{title}: panel data source"
    );
    assert_eq!(p["datasource"]["type"], "prometheus", "{title}");
    assert!(
        p["description"].as_str().is_some_and(|s| !s.is_empty()),
        "{title}: a description says what it shows"
    );
    assert!(
        p["fieldConfig"]["defaults"].is_object() && p["fieldConfig"]["overrides"].is_array(),
        "{title}: fieldConfig"
    );
    assert!(p["options"].is_object(), "{title}: options");
    let targets = p["targets"]
        .as_array()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| panic!("{title}: no queries"));
    let mut refs = BTreeSet::new();
    for t in targets {
        assert!(
            refs.insert(t["refId"].as_str().expect("refId")),
            "{title}: refId twice"
        );
        assert_eq!(
            t["datasource"]["uid"], "${datasource}",
            "{title}: query data source"
        );
        assert!(
            t["expr"].as_str().is_some_and(|e| !e.is_empty()),
            "{title}: empty query"
        );
    }
}

#[test]
fn dashboard_follows_grafanas_dashboard_model() {
    let d = dashboard();
    check_dashboard_top_level(&d);
    let names = check_variables(&d);
    let mut ids = BTreeSet::new();
    let mut cells = BTreeMap::new();
    for p in all_panels(&d) {
        check_panel(p, &mut ids, &mut cells);
    }

    // Every variable a query uses is one the dashboard defines, or Grafana's own.
    let mut defined: Vec<(&str, String)> = names.iter().map(|n| (n.as_str(), "x".to_owned())).collect();
    defined.extend(BUILTINS.iter().map(|(n, v)| (*n, v.to_string())));
    let queries = panel_queries(&d);
    assert!(queries.len() >= 30, "{} queries", queries.len());
    for q in &queries {
        expand(&q.expr, &defined).unwrap_or_else(|e| panic!("{}: {e}", q.name()));
    }
}

#[test]
fn dashboard_has_a_panel_for_each_thing_an_operator_watches() {
    let d = dashboard();
    let queries = panel_queries(&d);
    let uses = |metric: &str| queries.iter().any(|q| q.expr.contains(metric));
    for metric in [
        "netanom_packets_total",
        "netanom_packets_dropped_total",
        "netanom_packets_passed_allowlisted_total",
        "netanom_anomalies_total",
        "netanom_findings_total",
        "netanom_blocks_active",
        "netanom_rate_limits_active",
        "netanom_blocks_added_total",
        "netanom_blocks_expired_total",
        "netanom_rate_limits_added_total",
        "netanom_would_block_total",
        "netanom_circuit_breaker_open",
        "netanom_circuit_breaker_trips_total",
        "netanom_drain_duration_seconds_bucket",
        "netanom_scoring_duration_seconds_bucket",
        "netanom_flow_table_fill_ratio",
        "netanom_flows_evicted_total",
        "netanom_flows_export_lost_total",
        "netanom_queue_full_waits_total",
        "netanom_model_bundle_info",
        "netanom_build_info",
        "netanom_xdp_attached_info",
        "netanom_mode_info",
    ] {
        assert!(uses(metric), "no panel shows {metric}");
    }
    let quantiles: Vec<&str> = queries
        .iter()
        .filter(|q| q.expr.starts_with("histogram_quantile("))
        .map(|q| q.expr.as_str())
        .collect();
    assert!(quantiles.len() >= 4, "drain and scoring quantiles: {quantiles:?}");
}

#[test]
fn prometheusrule_script_wraps_exactly_the_alert_rules() {
    let out = std::process::Command::new("sh")
        .arg(repo_file("deploy/kubernetes/prometheusrule.sh"))
        .output()
        .expect("sh");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let docs = yaml_rust2::YamlLoader::load_from_str(&String::from_utf8_lossy(&out.stdout)).expect("YAML");
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0]["kind"].as_str(), Some("PrometheusRule"));
    assert_eq!(docs[0]["metadata"]["namespace"].as_str(), Some("netanom"));
    assert_eq!(
        docs[0]["spec"]["groups"],
        yaml(netanom_lab::deploy::RULES)["groups"]
    );
}
