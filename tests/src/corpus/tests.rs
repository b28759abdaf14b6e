//! The manifest's checks, the manifest writer, the roles and the scenario table.
use std::{net::IpAddr, path::Path, str::FromStr as _};

use super::{
    capture::Roles,
    manifest::{Expected, Label, Manifest, ManifestError},
    render::{entry, table, upsert},
    scenarios::{SCENARIOS, scenario},
};

const GOOD: &str = r#"
# a comment
[[capture]]
file = "scan.pcap"
scenario = "scan"
label = "attack"
tool = "nmap"
command = "nmap -sS 198.18.3.2"
attackers = ["198.18.2.2"]
victims = ["198.18.3.0/24"]
innocents = ["198.18.1.2", "2001:db8:1::2"]
expected = "block_source"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
description = "d"

[[capture]]
file = "shared:pcaps/attacks/x.pcap"
scenario = "real-flood"
label = "attack"
tool = "unknown"
command = ""
victims = ["10.10.10.10"]
expected = "victim_rate_limit"
sha256 = "1111111111111111111111111111111111111111111111111111111111111111"
description = "d"
"#;

fn parse(text: &str) -> Result<Manifest, ManifestError> {
    Manifest::parse(Path::new("manifest.toml"), text)
}

/// `GOOD` with the first occurrence of `from` replaced by `to`: its error message.
fn problem(from: &str, to: &str) -> String {
    assert!(GOOD.contains(from), "{from}");
    match parse(&GOOD.replacen(from, to, 1)) {
        Ok(_) => panic!("accepted with {to:?} for {from:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_good_manifest_parses() {
    let m = parse(GOOD).unwrap();
    assert_eq!(m.entries.len(), 2);
    let scan = m.get("scan").unwrap();
    assert!(scan.is_recorded());
    assert_eq!(scan.victims[0].to_string(), "198.18.3.0/24");
    let shared = m.get("real-flood").unwrap();
    assert!(!shared.is_recorded() && shared.attackers.is_empty());
    assert_eq!(
        shared.path(Path::new("/c"), Some(Path::new("/s"))).unwrap(),
        Path::new("/s/datasets/pcaps/attacks/x.pcap")
    );
    assert_eq!(shared.path(Path::new("/c"), None), None);
}

#[test]
fn inconsistent_entries_are_refused_with_the_reason() {
    let cases = [
        (
            r#"label = "attack""#,
            r#"label = "benign""#,
            "a benign capture expects `none`",
        ),
        (
            r#"expected = "block_source""#,
            r#"expected = "none""#,
            "an attack expects",
        ),
        (
            r#"attackers = ["198.18.2.2"]"#,
            "attackers = []",
            "block_source needs the attackers",
        ),
        (
            r#"victims = ["10.10.10.10"]"#,
            "victims = []",
            "victim_rate_limit needs the victims",
        ),
        (
            r#"innocents = ["198.18.1.2", "#,
            r#"innocents = ["198.18.2.0/24", "#,
            "is both an attacker and an innocent",
        ),
        (
            r#"victims = ["198.18.3.0/24"]"#,
            r#"victims = ["192.0.2.0/24"]"#,
            "outside the lab's ranges",
        ),
        (
            r#"sha256 = "0000"#,
            r#"sha256 = "Z000"#,
            "is not 64 lower-case hex digits",
        ),
        (
            r#"file = "scan.pcap""#,
            r#"file = "../scan.pcap""#,
            "must be a relative path",
        ),
        (
            r#"file = "scan.pcap""#,
            r#"file = "scan.txt""#,
            "is not a .pcap or .pcapng",
        ),
        (
            r#"scenario = "scan""#,
            r#"scenario = "real-flood""#,
            "the scenario name is used twice",
        ),
        (
            r#"scenario = "scan""#,
            r#"scenario = "a b""#,
            "the scenario name must be",
        ),
        (
            "description = \"d\"\n\n",
            "description = \"d\"\ncolour = \"red\"\n\n",
            "unknown field `colour`",
        ),
        (
            r#"victims = ["198.18.3.0/24"]"#,
            r#"victims = ["198.18.3.1/24"]"#,
            "host bits set",
        ),
    ];
    for (from, to, want) in cases {
        let got = problem(from, to);
        assert!(got.contains(want), "{to}: {got}");
    }
    // Entry errors name the capture.
    assert!(problem(r#"label = "attack""#, r#"label = "benign""#).contains("capture `scan`"));
}

#[test]
fn a_benign_capture_names_no_attacker() {
    let text = GOOD
        .replacen(r#"label = "attack""#, r#"label = "benign""#, 1)
        .replacen(r#"expected = "block_source""#, r#"expected = "none""#, 1);
    assert!(
        parse(&text)
            .unwrap_err()
            .to_string()
            .contains("names no attackers or victims")
    );
}

#[test]
fn roles_decide_which_traffic_is_the_attack() {
    let ip = |s: &str| IpAddr::from_str(s).unwrap();
    let m = parse(GOOD).unwrap();
    let scan = Roles::of(m.get("scan").unwrap());
    assert!(scan.is_attack(ip("198.18.2.2"), ip("198.18.3.2")));
    // The server's answers to the attacker.
    assert!(scan.is_attack(ip("198.18.3.2"), ip("198.18.2.2")));
    // The benign client's traffic to a victim, and the victim's answers to it.
    assert!(!scan.is_attack(ip("198.18.1.2"), ip("198.18.3.2")));
    assert!(!scan.is_attack(ip("198.18.3.2"), ip("198.18.1.2")));
    assert!(scan.is_innocent(ip("198.18.3.9")), "victims are innocent too");
    let flood = Roles::of(m.get("real-flood").unwrap());
    // Any unnamed source toward the victim is part of the flood.
    assert!(flood.is_attack(ip("203.0.113.7"), ip("10.10.10.10")));
    assert!(!flood.is_attack(ip("10.10.10.10"), ip("203.0.113.7")));
}

#[test]
fn recorded_entries_replace_their_table_in_place_and_keep_the_rest() {
    let s = scenario("hping3-syn-flood").unwrap();
    let e = entry(s, &"a".repeat(64), "hping3 3.a2");
    // A manifest with only shared captures: the new table goes before them and their comment.
    let shared_only =
        "# header\n\n# shared ones\n[[capture]]\nfile = \"shared:pcaps/x.pcap\"\nscenario = \"x\"\n";
    let order: Vec<&str> = SCENARIOS.iter().map(|s| s.name).collect();
    let added = upsert(shared_only, &e, &order);
    assert!(
        added.starts_with(&format!(
            "# header\n\n{}\n\n# shared ones\n[[capture]]",
            table(&e)
        )),
        "{added}"
    );
    // Re-recording replaces the table, not the comment or the shared table after it.
    let e2 = entry(s, &"b".repeat(64), "hping3 3.a2");
    let replaced = upsert(&added, &e2, &order);
    assert_eq!(replaced, added.replace(&"a".repeat(64), &"b".repeat(64)));
    // Others go in the scenario table's order: nmap-syn-scan before, hping3-udp-flood after.
    let other = entry(scenario("nmap-syn-scan").unwrap(), &"c".repeat(64), "nmap 7.93");
    let udp = entry(
        scenario("hping3-udp-flood").unwrap(),
        &"d".repeat(64),
        "hping3 3.a2",
    );
    let three = upsert(&upsert(&replaced, &udp, &order), &other, &order);
    let at = |needle: &str| {
        three
            .find(needle)
            .unwrap_or_else(|| panic!("{needle} in {three}"))
    };
    let (nmap, syn, udp_at, shared) = (
        at("scenario = \"nmap-syn-scan\""),
        at("scenario = \"hping3-syn-flood\""),
        at("scenario = \"hping3-udp-flood\""),
        at("# shared ones"),
    );
    assert!(nmap < syn && syn < udp_at && udp_at < shared, "{three}");
    assert!(
        !three.contains("\n\n\n"),
        "one blank line between tables: {three}"
    );
    // What is written parses back to the same entry.
    let text = format!("{}\n", table(&other));
    let parsed = parse(&text).unwrap();
    assert_eq!(parsed.entries, [other]);
}

#[test]
fn the_scenario_table_makes_valid_entries() {
    let mut text = String::new();
    for s in SCENARIOS {
        text.push_str(&table(&entry(s, &"0".repeat(64), s.tool)));
        text.push_str("\n\n");
        assert!(!s.command().is_empty(), "{}", s.name);
        assert_eq!(
            s.label == Label::Benign,
            s.expected == Expected::None,
            "{}",
            s.name
        );
    }
    let m = parse(&text).unwrap();
    assert_eq!(m.entries.len(), SCENARIOS.len());
    assert!(
        m.entries.iter().any(|e| e.attackers.iter().any(|a| a.is_v6())),
        "an IPv6 attack"
    );
    assert!(
        m.entries
            .iter()
            .any(|e| e.label == Label::Benign && e.innocents.iter().any(|a| a.is_v6())),
        "an IPv6 benign client"
    );
}
