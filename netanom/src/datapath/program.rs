//! The embedded XDP program: loading it (maps sized and timeouts set first), the maps it
//! owns, and BPF_PROG_TEST_RUN for tests and benchmarks.
use std::{
    fmt,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfError, EbpfLoader,
    maps::{Map, MapData},
    programs::{ProgramError, TestRun as _, TestRunOptions, Xdp, links::FdLink},
};
use netanom_common::{flow::FlowTimeouts, names};

use super::error::{DatapathError, load_err, program_error_detail};

/// The XDP program, compiled for the BPF target by build.rs.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netanom"));

/// Whether this binary carries the real XDP program (false when built without bpf-linker).
pub fn has_program() -> bool {
    !EBPF_OBJECT.is_empty()
}

/// The mode the program ended up attached in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttachMode {
    Native,
    Skb,
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AttachMode::Native => "native",
            AttachMode::Skb => "skb",
        })
    }
}

/// One interface the program is attached to.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Attachment {
    pub iface: String,
    pub mode: AttachMode,
    /// Whether the TC egress classifier is attached too (outgoing packets accounted).
    pub egress: bool,
}

/// Kernel map sizes and flow timeouts, fixed when the program is loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadOptions {
    /// Flow table entries (LRU: the least recently used flow is evicted when full).
    pub flow_entries: u32,
    /// Per-source aggregate entries.
    pub src_entries: u32,
    /// Per-destination-service aggregate entries.
    pub dst_entries: u32,
    /// Bytes of the ring buffer that carries ended flows to the agent (a power of two).
    pub export_ring_bytes: u32,
    pub timeouts: FlowTimeouts,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            flow_entries: 262_144,
            src_entries: 65_536,
            dst_entries: 65_536,
            export_ring_bytes: 4 << 20,
            timeouts: FlowTimeouts::DEFAULT,
        }
    }
}

impl LoadOptions {
    /// Approximate kernel memory the maps take, in bytes (entry size plus the hash table's
    /// per-element overhead of about 56 bytes).
    pub fn memory_estimate(&self) -> u64 {
        use netanom_common::{agg, flow};
        let per = |k: usize, v: usize| (k + v + 56) as u64;
        u64::from(self.flow_entries) * per(size_of::<flow::FlowKey>(), size_of::<flow::FlowValue>())
            + u64::from(self.src_entries) * per(size_of::<agg::HostKey>(), size_of::<agg::SrcStats>())
            + u64::from(self.dst_entries) * per(size_of::<agg::DstKey>(), size_of::<agg::DstStats>())
            + u64::from(self.export_ring_bytes)
    }

    fn validate(&self) -> Result<(), DatapathError> {
        let bad = |what: &str, v: u32, rule: &str| {
            Err(DatapathError::BadOption {
                detail: format!("{what} = {v}: {rule}"),
            })
        };
        for (what, v) in [
            ("flow table entries", self.flow_entries),
            ("source aggregate entries", self.src_entries),
            ("destination aggregate entries", self.dst_entries),
        ] {
            if !(64..=1 << 26).contains(&v) {
                return bad(what, v, "must be between 64 and 67108864");
            }
        }
        let r = self.export_ring_bytes;
        if !r.is_power_of_two() || !(4096..=1 << 30).contains(&r) {
            return bad(
                "export ring bytes",
                r,
                "must be a power of two between 4096 and 1 GiB",
            );
        }
        Ok(())
    }
}

/// The loaded XDP program and its maps. Dropping it detaches the program everywhere.
///
/// With a pin directory, the mitigation maps live there (shared with earlier and later agents
/// and with `netanom block|allow`), and each XDP attachment is a pinned link: if the agent
/// dies, the program stays attached and goes on enforcing blocks until they expire; the next
/// agent replaces it. A clean stop (dropping the `Datapath`) unpins and detaches.
pub struct Datapath {
    pub(super) ebpf: Ebpf,
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    pub(super) attachments: Vec<Attachment>,
    pub(super) pin_dir: Option<PathBuf>,
    /// Pinned XDP links: the pin's path and the link (detached when dropped).
    pub(super) pinned_links: Vec<(String, PathBuf, FdLink)>,
}

impl Drop for Datapath {
    fn drop(&mut self) {
        for (iface, path, _) in &self.pinned_links {
            if let Err(e) = std::fs::remove_file(path) {
                log::warn!("{iface}: could not unpin the XDP link at {}: {e}", path.display());
            }
        }
        // The links themselves detach as the fields are dropped.
    }
}

/// Creates the mitigation maps in `dir` (from the program object, so their definitions match
/// what the XDP program expects) and pins them, without loading any program. The other maps
/// are created at their smallest and freed on return.
pub fn create_pins(dir: &Path) -> Result<(), DatapathError> {
    if !has_program() {
        return Err(DatapathError::Placeholder);
    }
    let mut loader = EbpfLoader::new();
    loader
        .map_max_entries(names::MAP_FLOWS, 64)
        .map_max_entries(names::MAP_SRC, 64)
        .map_max_entries(names::MAP_DST, 64)
        .map_max_entries(names::MAP_FLOW_EXPORT, 4096);
    for name in names::PINNED_MAPS {
        loader.map_pin_path(name, dir.join(name));
    }
    loader.load(EBPF_OBJECT).map_err(load_err)?;
    Ok(())
}

impl Datapath {
    /// Loads the embedded program with default options; attaches nothing.
    pub fn load() -> Result<Self, DatapathError> {
        Self::load_with(&LoadOptions::default())
    }

    /// Loads the embedded program into the kernel (verifier included); attaches nothing.
    /// The mitigation maps are private to this instance (tests, benchmarks).
    pub fn load_with(opts: &LoadOptions) -> Result<Self, DatapathError> {
        Self::load_pinned(opts, None)
    }

    /// Like [`Datapath::load_with`], with the mitigation maps pinned in (and reused from)
    /// `pin_dir`, and XDP links pinned there too.
    pub fn load_pinned(opts: &LoadOptions, pin_dir: Option<&Path>) -> Result<Self, DatapathError> {
        if !has_program() {
            return Err(DatapathError::Placeholder);
        }
        opts.validate()?;
        // The program's debug logs cost a branch unless enabled: only ship them when the agent
        // itself logs at debug level (aya-log-ebpf levels: 1 error .. 4 debug, 5 trace).
        let level: u8 = if log::log_enabled!(target: "netanom_ebpf", log::Level::Debug) {
            5
        } else {
            2
        };
        let mut loader = EbpfLoader::new();
        loader
            .override_global(names::GLOBAL_LOG_LEVEL, &level, false)
            .override_global(names::GLOBAL_TIMEOUTS, &opts.timeouts, true)
            .map_max_entries(names::MAP_FLOWS, opts.flow_entries)
            .map_max_entries(names::MAP_SRC, opts.src_entries)
            .map_max_entries(names::MAP_DST, opts.dst_entries)
            .map_max_entries(names::MAP_FLOW_EXPORT, opts.export_ring_bytes);
        if let Some(dir) = pin_dir {
            for name in names::PINNED_MAPS {
                loader.map_pin_path(name, dir.join(name));
            }
        }
        let mut ebpf = loader.load(EBPF_OBJECT).map_err(|e| match e {
            EbpfError::ProgramError(p) => load_err(program_error_detail(&p)),
            other => load_err(other),
        })?;
        let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(l) => Some(l),
            Err(e) => {
                log::debug!("XDP program logging unavailable: {e}");
                None
            }
        };
        let prog: &mut Xdp = xdp_mut(&mut ebpf, names::PROG_XDP)?;
        prog.load().map_err(|e| load_err(program_error_detail(&e)))?;
        Ok(Self {
            ebpf,
            logger,
            attachments: Vec::new(),
            pin_dir: pin_dir.map(Path::to_owned),
            pinned_links: Vec::new(),
        })
    }

    /// A kernel map by name (for the drain and tests).
    pub fn map(&self, name: &'static str) -> Result<&Map, DatapathError> {
        self.ebpf.map(name).ok_or(DatapathError::Map {
            map: name,
            detail: "not in the program object".into(),
        })
    }

    /// Takes a map out of the program object (the ring buffer reader owns its map).
    pub fn take_map(&mut self, name: &'static str) -> Result<Map, DatapathError> {
        self.ebpf.take_map(name).ok_or(DatapathError::Map {
            map: name,
            detail: "not in the program object (or already taken)".into(),
        })
    }

    /// The file descriptor data of a map, for batch syscalls.
    pub fn map_data(&self, name: &'static str) -> Result<&MapData, DatapathError> {
        Ok(match self.map(name)? {
            Map::LruHashMap(d) | Map::HashMap(d) | Map::PerCpuArray(d) | Map::Array(d) => d,
            _ => {
                return Err(DatapathError::Map {
                    map: name,
                    detail: "unexpected map type".into(),
                });
            }
        })
    }

    pub fn attachments(&self) -> &[Attachment] {
        &self.attachments
    }

    /// Runs the XDP program once over `frame` with BPF_PROG_TEST_RUN; returns the XDP action
    /// and the kernel's average time per run. Used by tests and benchmarks that need no
    /// interface.
    pub fn test_run(
        &mut self,
        frame: &[u8],
        repeat: u32,
    ) -> Result<(u32, std::time::Duration), DatapathError> {
        self.test_run_program(names::PROG_XDP, frame, repeat)
    }

    /// Like [`Datapath::test_run`] for any XDP program of the object (the benchmark
    /// baselines [`names::PROG_BARE`], [`names::PROG_PARSE_ONLY`]); loads it on first use.
    pub fn test_run_program(
        &mut self,
        name: &'static str,
        frame: &[u8],
        repeat: u32,
    ) -> Result<(u32, std::time::Duration), DatapathError> {
        let prog = xdp_mut(&mut self.ebpf, name)?;
        if prog.fd().is_err() {
            prog.load().map_err(|e| load_err(program_error_detail(&e)))?;
        }
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        opts.repeat = repeat.max(1);
        let r = prog
            .test_run(opts)
            .map_err(|e| load_err(program_error_detail(&e)))?;
        Ok((r.return_value, r.duration))
    }

    /// The file descriptor of any XDP program of the object, loaded on first use: for
    /// BPF_PROG_TEST_RUN from several threads at once (the benchmark's per-CPU rows), which
    /// [`Datapath::test_run_program`]'s `&mut self` cannot do.
    pub fn program_fd(&mut self, name: &'static str) -> Result<std::os::fd::RawFd, DatapathError> {
        use std::os::fd::{AsFd as _, AsRawFd as _};
        let prog = xdp_mut(&mut self.ebpf, name)?;
        if prog.fd().is_err() {
            prog.load().map_err(|e| load_err(program_error_detail(&e)))?;
        }
        let fd = prog.fd().map_err(|e| load_err(program_error_detail(&e)))?;
        Ok(fd.as_fd().as_raw_fd())
    }

    /// Moves the program's log records to the agent's logger.
    pub fn flush_logs(&mut self) {
        if let Some(l) = self.logger.as_mut() {
            l.flush();
        }
    }
}

pub(super) fn xdp_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp, DatapathError> {
    ebpf.program_mut(name)
        .ok_or_else(|| load_err(format!("program {name} missing from the object")))?
        .try_into()
        .map_err(|e: ProgramError| load_err(e))
}
