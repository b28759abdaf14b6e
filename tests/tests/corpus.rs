//! The detection corpus (tests/corpus/) against its manifest, and the scorecard end to end.
//!
//! - `manifest_matches_the_corpus`: every capture file is listed; every listed capture is
//!   there with its sha256 (shared ones when `$NETANOM_SHARED` or ../shared exists); recorded
//!   captures are under 1 MiB, carry only lab addresses and headers the parser reads whole;
//!   every labelled role appears in its traffic; and every recorded entry is what the scenario
//!   table would write (so the command lines in the manifest are the ones that ran).
//! - `scorecard_runs_end_to_end`: the scorecard over the whole corpus with the agent of this
//!   build (`$NETANOM_BIN`): every run succeeds, every capture is scored in the four
//!   configurations, and the report is written. Needs no root: `run --pcap` is offline.
use std::time::Instant;

use netanom_lab::{
    TempDir,
    corpus::{check, corpus_dir, manifest::Manifest, render, scenarios::SCENARIOS},
    scorecard::{Config, Options, scorecard},
};

fn manifest() -> Manifest {
    Manifest::load(&corpus_dir().join("manifest.toml")).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn manifest_matches_the_corpus() {
    let m = manifest();
    let shared = netanom_lab::shared_dir();
    let c = check::check(&m, &corpus_dir(), shared.as_deref());
    assert!(
        c.problems.is_empty(),
        "the corpus does not match its manifest:\n{}",
        c.problems.join("\n")
    );
    if !c.skipped.is_empty() {
        eprintln!("not checked (no shared data directory): {}", c.skipped.join(", "));
    }
    for s in SCENARIOS {
        let e = m.get(s.name).unwrap_or_else(|| {
            panic!(
                "scenario {} has no manifest entry: record it with `cargo xtask corpus --only {}`",
                s.name, s.name
            )
        });
        assert!(
            e.tool.starts_with(s.tool),
            "{}: tool {} is not {}",
            s.name,
            e.tool,
            s.tool
        );
        let want = render::entry(s, &e.sha256, &e.tool);
        assert_eq!(
            *e, want,
            "{}: the manifest entry is not the scenario table's: re-record it (`cargo xtask corpus --only {}`)",
            s.name, s.name
        );
    }
    // Each recorded table is exactly what the recorder writes (re-writing it changes nothing).
    let text = std::fs::read_to_string(&m.path).expect("manifest");
    let order: Vec<&str> = SCENARIOS.iter().map(|s| s.name).collect();
    for e in m.entries.iter().filter(|e| e.is_recorded()) {
        assert_eq!(
            render::upsert(&text, e, &order),
            text,
            "{}: its table is not in the recorder's form",
            e.scenario
        );
        assert!(
            SCENARIOS.iter().any(|s| s.name == e.scenario),
            "{} is a corpus file with no scenario in tests/src/corpus/scenarios.rs",
            e.file
        );
    }
}

#[test]
fn scorecard_runs_end_to_end() {
    let bin = netanom_lab::agent_bin();
    assert!(
        bin.is_file(),
        "{} is missing: build the agent first (cargo xtask test does)",
        bin.display()
    );
    let out = TempDir::new("scorecard");
    let o = Options {
        bin,
        corpus_dir: corpus_dir(),
        shared_dir: netanom_lab::shared_dir(),
        out_dir: out.0.clone(),
        only: Vec::new(),
        workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let t = Instant::now();
    let r = scorecard(&o).unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!(
        "scorecard over {} captures in {:.1} s",
        r.captures.len(),
        t.elapsed().as_secs_f64()
    );
    let m = manifest();
    assert_eq!(r.captures.len() + r.skipped.len(), m.entries.len());
    for cap in &r.captures {
        for c in Config::ALL {
            let res = &cap.results[c.key()];
            assert!(
                res.score.is_some(),
                "{} / {}: {:?}",
                cap.entry.scenario,
                c.key(),
                res.error
            );
            assert_eq!(
                res.summary["frames"].as_u64(),
                Some(cap.frames),
                "{}: the agent read every frame",
                cap.entry.scenario
            );
        }
    }
    let md = std::fs::read_to_string(out.path("report.md")).expect("report.md");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path("report.json")).expect("report.json"))
            .expect("report.json is JSON");
    assert_eq!(json["captures"].as_array().map(Vec::len), Some(r.captures.len()));
    for cap in &r.captures {
        assert!(
            md.contains(&format!("### {} (", cap.entry.scenario)),
            "report.md lacks {}",
            cap.entry.scenario
        );
    }
}
