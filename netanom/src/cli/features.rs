//! `netanom features`: flow features of a capture file, as CSV. The capture source's flow
//! records, through the CSV sink.
use std::{
    fs::File,
    io::{self, BufWriter, Write},
    path::PathBuf,
    time::Duration,
};

use netanom_common::flow::FlowTimeouts;

use super::args::parse_timeout;
use crate::{
    sinks::CsvSink,
    sources::capture::{Capture, CaptureError, ExtractOptions, extract},
};

/// `netanom features`: flow features of a capture file, as CSV.
#[derive(Debug, clap::Args)]
pub struct FeaturesArgs {
    /// Capture to read: classic pcap or pcapng, recognised by content (not by extension), with
    /// Ethernet link type.
    #[arg(long, value_name = "FILE")]
    pub pcap: PathBuf,
    /// Write the CSV here instead of standard output.
    #[arg(long, value_name = "FILE.csv")]
    pub out: Option<PathBuf>,
    /// Export a flow and start it afresh once it is older than this many seconds.
    #[arg(long, value_name = "SECS", value_parser = parse_timeout, default_value = "120")]
    pub active_timeout: Duration,
    /// Export a flow that has seen no packet for this many seconds.
    #[arg(long, value_name = "SECS", value_parser = parse_timeout, default_value = "30")]
    pub idle_timeout: Duration,
}

impl FeaturesArgs {
    pub fn options(&self) -> ExtractOptions {
        ExtractOptions {
            timeouts: FlowTimeouts {
                active_ns: self.active_timeout.as_nanos() as u64,
                idle_ns: self.idle_timeout.as_nanos() as u64,
                ..FlowTimeouts::DEFAULT
            },
            ..ExtractOptions::default()
        }
    }
}

/// Runs `netanom features`: writes the CSV, prints the summary line on stderr, and fails if
/// the capture could not be read to its end (after writing what it held).
pub fn run(args: &FeaturesArgs) -> Result<(), CaptureError> {
    let capture = Capture::open(&args.pcap)?;
    let (dest, out): (String, Box<dyn Write>) = match &args.out {
        Some(path) => {
            if let (Ok(a), Ok(b)) = (std::fs::canonicalize(path), std::fs::canonicalize(&args.pcap))
                && a == b
            {
                return Err(CaptureError::OutputIsInput { path: path.clone() });
            }
            let dest = path.display().to_string();
            let file = File::create(path).map_err(|err| CaptureError::Output {
                dest: dest.clone(),
                err,
            })?;
            (dest, Box::new(BufWriter::with_capacity(1 << 16, file)))
        }
        None => (
            "standard output".into(),
            Box::new(BufWriter::with_capacity(1 << 16, io::stdout().lock())),
        ),
    };
    let output_err = |err| CaptureError::Output {
        dest: dest.clone(),
        err,
    };
    let mut sink = CsvSink::unix(out);
    let summary = match extract(capture, &args.options(), &mut sink) {
        Ok(s) => s,
        Err(CaptureError::Output { err, .. }) => return Err(output_err(err)),
        Err(e) => return Err(e),
    };
    sink.finish().map_err(output_err)?;
    eprintln!("netanom: features: {}", summary.line());
    match summary.stopped {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use pcap_file::DataLink;

    use super::*;
    use crate::{
        features::{FLOW_FEATURES, csv::csv_header},
        sources::capture::testing::{CLI, SRV, TempDir, tcp_exchange, udp, write_pcap},
    };

    #[test]
    fn csv_output_end_to_end() {
        let dir = TempDir::new("csv");
        let path = dir.path("exchange.pcapng.pcap");
        let mut frames = tcp_exchange();
        frames.push((20_000, udp(CLI, 5353, SRV, 53, 30)));
        write_pcap(&path, DataLink::ETHERNET, &frames);
        let out = dir.path("flows.csv");
        let args = FeaturesArgs {
            pcap: path,
            out: Some(out.clone()),
            active_timeout: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(30),
        };
        run(&args).unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], csv_header());
        assert!(lines[1].starts_with("192.168.1.20-192.168.1.10-40000-80-6,192.168.1.20,40000,"));
        assert!(lines[1].ends_with(",fin"));
        assert!(lines[2].starts_with("192.168.1.20-192.168.1.10-5353-53-17,"));
        assert!(lines[2].ends_with(",flush"));
        let cols = 7 + FLOW_FEATURES.len() + 1;
        assert!(lines.iter().all(|l| l.split(',').count() == cols));
        // --out must not overwrite the capture.
        let same = FeaturesArgs {
            out: Some(args.pcap.clone()),
            ..args
        };
        assert!(matches!(run(&same), Err(CaptureError::OutputIsInput { .. })));
    }

    #[test]
    fn cli_parses_features_arguments() {
        use clap::Parser as _;
        let cli = crate::cli::Cli::try_parse_from(["netanom", "features", "--pcap", "a.pcap"]).unwrap();
        let crate::cli::Command::Features(a) = cli.command else {
            panic!("not features")
        };
        assert_eq!(a.options().timeouts, FlowTimeouts::DEFAULT);
        assert_eq!(a.out, None);
        let cli = crate::cli::Cli::try_parse_from([
            "netanom",
            "features",
            "--pcap",
            "a.pcap",
            "--out",
            "f.csv",
            "--active-timeout",
            "60",
            "--idle-timeout",
            "0.5",
        ])
        .unwrap();
        let crate::cli::Command::Features(a) = cli.command else {
            panic!("not features")
        };
        let t = a.options().timeouts;
        assert_eq!((t.active_ns, t.idle_ns), (60_000_000_000, 500_000_000));
        assert!(
            crate::cli::Cli::try_parse_from(["netanom", "features", "--pcap", "a", "--idle-timeout", "0"])
                .is_err()
        );
        assert!(crate::cli::Cli::try_parse_from(["netanom", "features"]).is_err());
    }
}
