//! Range and consistency checks of every section: each error names the key as `section.key`,
//! the value and what is allowed.
use super::{
    error::ConfigError,
    file::{AgentConfig, Config},
};
use crate::{
    bgp::BgpConfig, datapath::DatapathConfig, detect::DetectionConfig, fleet::FleetConfig,
    respond::MitigationConfig,
};

impl Config {
    /// Checks every section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        agent(&self.agent)?;
        datapath(&self.datapath)?;
        detection(&self.detection)?;
        mitigation(&self.mitigation)?;
        bgp(&self.bgp)?;
        fleet(&self.fleet)
    }
}

fn agent(a: &AgentConfig) -> Result<(), ConfigError> {
    interfaces(&a.interfaces)?;
    int_range("agent.model_threads", a.model_threads as u64, 1, 256)?;
    float_range("agent.stats_interval", a.stats_interval, 0.05, 3600.0)?;
    for (key, path) in [
        ("agent.bpffs", &a.bpffs),
        ("agent.pin_dir", &a.pin_dir),
        ("agent.state_dir", &a.state_dir),
    ] {
        if !path.is_absolute() {
            return Err(invalid(
                key,
                format!("{:?}", path.display().to_string()),
                "an absolute path",
            ));
        }
    }
    if !a.pin_dir.starts_with(&a.bpffs) || a.pin_dir == a.bpffs {
        return Err(invalid(
            "agent.pin_dir",
            format!("{:?}", a.pin_dir.display().to_string()),
            format!(
                "a directory under agent.bpffs ({}), for example {}",
                a.bpffs.display(),
                a.bpffs.join("netanom").display()
            ),
        ));
    }
    for (key, path) in [
        ("agent.bundle", &a.bundle),
        ("agent.ort_lib", &a.ort_lib),
        ("agent.flows_out", &a.flows_out),
    ] {
        if path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            return Err(invalid(
                key,
                "\"\"".into(),
                "a non-empty path (`\"\"` in the file means none)",
            ));
        }
    }
    Ok(())
}

/// Each name a possible Linux interface name, and listed once.
fn interfaces(names: &[String]) -> Result<(), ConfigError> {
    for name in names {
        if name.is_empty()
            || name.len() > 15
            || name == "."
            || name == ".."
            || name.contains(['/', ':'])
            || name.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid(
                "agent.interfaces",
                format!("{name:?}"),
                "an interface name is 1 to 15 characters without '/', ':' or spaces",
            ));
        }
    }
    if let Some(dup) = names
        .iter()
        .enumerate()
        .find_map(|(i, n)| names[..i].contains(n).then_some(n))
    {
        return Err(invalid(
            "agent.interfaces",
            format!("{:?}", names),
            format!("each interface once; {dup:?} is listed twice"),
        ));
    }
    Ok(())
}

fn datapath(d: &DatapathConfig) -> Result<(), ConfigError> {
    for (key, n) in [
        ("datapath.flow_table_size", d.flow_table_size),
        ("datapath.src_table_size", d.src_table_size),
        ("datapath.dst_table_size", d.dst_table_size),
    ] {
        int_range(key, n.into(), 64, 1 << 26)?;
    }
    if !d.export_ring_bytes.is_power_of_two() || !(4096..=1 << 30).contains(&d.export_ring_bytes) {
        return Err(invalid(
            "datapath.export_ring_bytes",
            d.export_ring_bytes.to_string(),
            "a power of two from 4096 to 1073741824 (1 GiB)",
        ));
    }
    float_range("datapath.active_timeout", d.active_timeout, 0.001, 86_400.0)?;
    float_range("datapath.idle_timeout", d.idle_timeout, 0.001, 86_400.0)?;
    float_range("datapath.sweep_interval", d.sweep_interval, 0.05, 3600.0)?;
    float_range("datapath.aggregate_interval", d.aggregate_interval, 0.05, 3600.0)?;
    Ok(())
}

fn detection(t: &DetectionConfig) -> Result<(), ConfigError> {
    let names: Vec<&str> = t.detectors.iter().map(|d| d.name()).collect();
    let unique: std::collections::BTreeSet<&str> = names.iter().copied().collect();
    if names.is_empty() || unique.len() != names.len() {
        return Err(invalid(
            "detection.detectors",
            format!("{names:?}"),
            "a non-empty list without repeats of \"models\", \"aggregates\" and \"beacons\"",
        ));
    }
    float_range("detection.flow_window", t.flow_window, 1.0, 3600.0)?;
    int_range(
        "detection.min_anomalous_flows",
        t.min_anomalous_flows.into(),
        1,
        u32::MAX.into(),
    )?;
    float_range("detection.min_anomalous_ratio", t.min_anomalous_ratio, 0.0, 1.0)?;
    for (key, v) in [
        ("detection.src_pps", t.src_pps),
        ("detection.src_syn_rate", t.src_syn_rate),
        ("detection.src_port_rate", t.src_port_rate),
        ("detection.src_host_rate", t.src_host_rate),
        ("detection.slow_ports_1m", t.slow_ports_1m),
        ("detection.slow_hosts_1m", t.slow_hosts_1m),
        ("detection.slow_ports_10m", t.slow_ports_10m),
        ("detection.slow_hosts_10m", t.slow_hosts_10m),
        ("detection.brute_short", t.brute_short),
        ("detection.dst_sources", t.dst_sources),
        ("detection.dst_pps", t.dst_pps),
    ] {
        positive(key, v)?;
    }
    at_least("detection.learned_margin", t.learned_margin, 1.0)?;
    brute_force(t)?;
    beacons(t)?;
    int_range(
        "detection.slow_max_sources",
        t.slow_max_sources.into(),
        1,
        10_000_000,
    )?;
    if !(0.5..1.0).contains(&t.recalibrate_quantile) {
        return Err(invalid(
            "detection.recalibrate_quantile",
            t.recalibrate_quantile.to_string(),
            "from 0.5 to below 1, for example 0.999",
        ));
    }
    int_range(
        "detection.recalibrate_min_samples",
        t.recalibrate_min_samples,
        100,
        u64::MAX,
    )?;
    Ok(())
}

fn mitigation(m: &MitigationConfig) -> Result<(), ConfigError> {
    const YEAR: f64 = 31_536_000.0;
    float_range("mitigation.block_ttl", m.block_ttl, 1.0, YEAR)?;
    at_least("mitigation.ttl_escalation", m.ttl_escalation, 1.0)?;
    float_range("mitigation.max_block_ttl", m.max_block_ttl, 1.0, YEAR)?;
    if m.max_block_ttl < m.block_ttl {
        return Err(invalid(
            "mitigation.max_block_ttl",
            m.max_block_ttl.to_string(),
            format!("at least mitigation.block_ttl ({})", m.block_ttl),
        ));
    }
    float_range("mitigation.forget_after", m.forget_after, 1.0, YEAR)?;
    int_range("mitigation.block_prefix_v4", m.block_prefix_v4.into(), 8, 32)?;
    int_range("mitigation.block_prefix_v6", m.block_prefix_v6.into(), 32, 128)?;
    int_range("mitigation.max_blocks", m.max_blocks.into(), 1, 65_536)?;
    int_range(
        "mitigation.max_new_blocks_per_minute",
        m.max_new_blocks_per_minute.into(),
        1,
        u32::MAX.into(),
    )?;
    float_range("mitigation.breaker_cooldown", m.breaker_cooldown, 0.0, YEAR)?;
    positive("mitigation.rate_limit_pps", m.rate_limit_pps)?;
    int_range(
        "mitigation.rate_limit_burst",
        m.rate_limit_burst.into(),
        1,
        u32::MAX.into(),
    )?;
    float_range("mitigation.rate_limit_ttl", m.rate_limit_ttl, 1.0, YEAR)?;
    int_range("mitigation.max_rate_limits", m.max_rate_limits.into(), 1, 4096)?;
    Ok(())
}

fn bgp(b: &BgpConfig) -> Result<(), ConfigError> {
    for (v4, family, max) in [(true, "v4", 32u8), (false, "v6", 128)] {
        let (bits, widest) = (b.blackhole_prefix(v4), b.widest_prefix(v4));
        int_range(
            &format!("bgp.widest_prefix_{family}"),
            widest.into(),
            8,
            max.into(),
        )?;
        int_range(
            &format!("bgp.blackhole_prefix_{family}"),
            bits.into(),
            8,
            max.into(),
        )?;
        if bits < widest {
            return Err(invalid(
                &format!("bgp.blackhole_prefix_{family}"),
                bits.to_string(),
                format!(
                    "at least bgp.widest_prefix_{family} ({widest}): wider blackholes are never announced"
                ),
            ));
        }
    }
    for (key, unspecified) in [
        ("bgp.next_hop_v4", b.next_hop_v4.is_unspecified()),
        ("bgp.next_hop_v6", b.next_hop_v6.is_unspecified()),
    ] {
        if unspecified {
            return Err(invalid(
                key,
                "an unspecified address".into(),
                "the address the routers send blackholed traffic to (their discard route), for \
                 example 192.0.2.1 or 100::1; the speaker would replace an unspecified one with its own",
            ));
        }
    }
    int_range(
        "bgp.flowspec_packet_bytes",
        b.flowspec_packet_bytes.into(),
        20,
        65_535,
    )?;
    int_range("bgp.max_routes", b.max_routes.into(), 1, 100_000)?;
    Ok(())
}

/// `[fleet]`: names that can be subject tokens, credentials given one way, a cap in range.
fn fleet(f: &FleetConfig) -> Result<(), ConfigError> {
    use crate::fleet::config::is_token;
    const TOKEN: &str = "1 to 64 letters, digits, '-' or '_' (it is a token of NATS subjects)";
    if f.enabled && f.servers.is_empty() {
        return Err(invalid(
            "fleet.servers",
            "[]".into(),
            "at least one nats:// or tls:// URL",
        ));
    }
    if !f.gateway_id.is_empty() && !is_token(&f.gateway_id) {
        return Err(invalid("fleet.gateway_id", format!("{:?}", f.gateway_id), TOKEN));
    }
    if f.enabled && f.gateway_id.is_empty() && !is_token(&f.gateway()) {
        return Err(invalid(
            "fleet.gateway_id",
            format!("\"\" (the host name {:?})", f.gateway()),
            format!("set, as the host name is not {TOKEN}"),
        ));
    }
    if !f.subject_prefix.split('.').all(is_token) {
        return Err(invalid(
            "fleet.subject_prefix",
            format!("{:?}", f.subject_prefix),
            "tokens of 1 to 64 letters, digits, '-' or '_', joined by dots",
        ));
    }
    if let Some(bad) = f.trust.iter().find(|t| !is_token(t)) {
        return Err(invalid(
            "fleet.trust",
            format!("{bad:?}"),
            format!("gateway ids: {TOKEN}"),
        ));
    }
    if f.user.is_empty() != f.password.is_empty() {
        return Err(invalid(
            "fleet.user",
            format!("{:?}", f.user),
            "set together with fleet.password (both or neither)",
        ));
    }
    if f.creds_file.is_some() && !f.user.is_empty() {
        return Err(invalid(
            "fleet.creds_file",
            "a file besides fleet.user".into(),
            "one way of authenticating: a credentials file, or user and password",
        ));
    }
    int_range("fleet.max_remote_blocks", f.max_remote_blocks.into(), 1, 65_536)?;
    Ok(())
}

/// The password-guessing keys: windows in order, floors the kept connections can reach.
fn brute_force(t: &DetectionConfig) -> Result<(), ConfigError> {
    use crate::detect::services::MAX_CONNS;
    float_range("detection.brute_window", t.brute_window, 1.0, 3600.0)?;
    float_range(
        "detection.brute_slow_window",
        t.brute_slow_window,
        t.brute_window,
        86_400.0,
    )?;
    for (key, n) in [
        ("detection.brute_min_connections", t.brute_min_connections),
        (
            "detection.brute_parallel_connections",
            t.brute_parallel_connections,
        ),
        (
            "detection.brute_slow_min_connections",
            t.brute_slow_min_connections,
        ),
    ] {
        int_range(key, n.into(), 2, MAX_CONNS as u64)?;
    }
    int_range("detection.brute_small_bytes", t.brute_small_bytes, 1, u64::MAX)?;
    float_range("detection.brute_min_share", t.brute_min_share, 0.0, 1.0)?;
    int_range(
        "detection.brute_max_pairs",
        t.brute_max_pairs.into(),
        1,
        10_000_000,
    )?;
    Ok(())
}

fn beacons(t: &DetectionConfig) -> Result<(), ConfigError> {
    int_range(
        "detection.beacon_min_flows",
        t.beacon_min_flows.into(),
        1,
        100_000,
    )?;
    if let Some(v) = t.beacon_threshold {
        float_range("detection.beacon_threshold", v, 0.0, 1.0)?;
    }
    positive("detection.beacon_min_period", t.beacon_min_period)?;
    for (key, v) in [
        ("detection.beacon_max_gap_dispersion", t.beacon_max_gap_dispersion),
        (
            "detection.beacon_max_size_dispersion",
            t.beacon_max_size_dispersion,
        ),
    ] {
        float_range(key, v, 0.0, 10.0)?;
    }
    int_range(
        "detection.beacon_max_channels",
        t.beacon_max_channels.into(),
        1,
        10_000_000,
    )?;
    Ok(())
}

fn invalid(key: &str, value: String, allowed: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        origin: None,
        key: key.to_owned(),
        value,
        allowed: allowed.into(),
    }
}

fn int_range(key: &str, v: u64, lo: u64, hi: u64) -> Result<(), ConfigError> {
    if (lo..=hi).contains(&v) {
        Ok(())
    } else if hi == u64::MAX || hi == u64::from(u32::MAX) {
        Err(invalid(key, v.to_string(), format!("at least {lo}")))
    } else {
        Err(invalid(key, v.to_string(), format!("from {lo} to {hi}")))
    }
}

fn float_range(key: &str, v: f64, lo: f64, hi: f64) -> Result<(), ConfigError> {
    if (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(invalid(
            key,
            v.to_string(),
            format!("from {lo} to {hi} (seconds where a duration)"),
        ))
    }
}

fn positive(key: &str, v: f64) -> Result<(), ConfigError> {
    if v > 0.0 && v.is_finite() {
        Ok(())
    } else {
        Err(invalid(key, v.to_string(), "a finite number greater than 0"))
    }
}

fn at_least(key: &str, v: f64, lo: f64) -> Result<(), ConfigError> {
    if v >= lo && v.is_finite() {
        Ok(())
    } else {
        Err(invalid(
            key,
            v.to_string(),
            format!("a finite number of at least {lo}"),
        ))
    }
}
