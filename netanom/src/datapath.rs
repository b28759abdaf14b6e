//! The embedded XDP program: loading it, attaching it to interfaces, reading its maps.
use std::{
    fmt, io,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfError, EbpfLoader,
    maps::{Map, MapData, MapError, PerCpuArray},
    programs::{
        ProgramError, SchedClassifier, TcAttachType, TestRun as _, TestRunOptions, Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        tc,
    },
};
use netanom_common::{Event, Proto, ProtoCounter, flow::FlowTimeouts, names};
use thiserror::Error;

/// The XDP program, compiled for the BPF target by build.rs.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netanom"));

/// Whether this binary carries the real XDP program (false when built without bpf-linker).
pub fn has_program() -> bool {
    !EBPF_OBJECT.is_empty()
}

/// Which XDP attach modes to try.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ModePreference {
    /// Native (driver) mode, falling back to generic (skb) mode where the driver lacks it.
    #[default]
    Auto,
    /// Native mode only.
    Native,
    /// Generic (skb) mode only.
    Skb,
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

#[derive(Debug, Error)]
pub enum DatapathError {
    #[error(
        "this netanom binary was built without its XDP program (bpf-linker was missing at build \
         time). Run `cargo xtask setup` to install the toolchain, then rebuild with `cargo xtask run`."
    )]
    Placeholder,
    #[error(
        "the kernel refused to load netanom's XDP program: {detail}. Check that the kernel has BPF \
         and XDP enabled and that netanom runs with CAP_BPF and CAP_NET_ADMIN; the kernel log \
         (`dmesg | tail`) may say more."
    )]
    Load { detail: String },
    #[error(
        "another XDP program is already attached to `{iface}`, and netanom will not replace it. \
         See it with `ip link show dev {iface}`; detach it with `ip link set dev {iface} xdp off` \
         if it is not needed, or watch a different interface."
    )]
    AlreadyAttached { iface: String },
    #[error(
        "could not attach the XDP program to `{iface}` in {tried} mode: {detail}. Try \
         `--xdp-mode auto` (falls back to skb mode), or check `ip link show dev {iface}`."
    )]
    Attach {
        iface: String,
        tried: &'static str,
        detail: String,
    },
    #[error("reading the kernel map {map} failed: {detail}")]
    Map { map: &'static str, detail: String },
    #[error("invalid datapath option: {detail}")]
    BadOption { detail: String },
    #[error(
        "could not attach the TC egress classifier to `{iface}`: {detail}. Outgoing packets are \
         then not accounted; disable egress accounting (--no-egress) to run without it."
    )]
    Egress { iface: String, detail: String },
}

fn load_err(e: impl fmt::Display) -> DatapathError {
    DatapathError::Load {
        detail: e.to_string(),
    }
}

fn map_err(map: &'static str) -> impl Fn(MapError) -> DatapathError {
    move |e| DatapathError::Map {
        map,
        detail: e.to_string(),
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
    ebpf: Ebpf,
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    attachments: Vec<Attachment>,
    pin_dir: Option<PathBuf>,
    /// Pinned XDP links: the pin's path and the link (detached when dropped).
    pinned_links: Vec<(String, PathBuf, FdLink)>,
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

/// Pin path of the XDP link on `iface`.
fn link_pin(dir: &Path, iface: &str) -> PathBuf {
    dir.join(format!("link_xdp_{iface}"))
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

    /// Attaches the XDP program to `iface`, native mode first unless told otherwise, and the
    /// TC egress classifier if `egress`.
    pub fn attach(
        &mut self,
        iface: &str,
        pref: ModePreference,
        egress: bool,
    ) -> Result<AttachMode, DatapathError> {
        // A link pinned by an agent that died keeps its program attached; replace it.
        if let Some(dir) = &self.pin_dir {
            let pin = link_pin(dir, iface);
            if pin.exists() {
                match PinnedLink::from_pin(&pin) {
                    Ok(old) => {
                        drop(old.unpin());
                        log::info!("{iface}: replacing the XDP program left attached by a previous agent");
                    }
                    Err(e) => {
                        log::warn!("{iface}: stale XDP link pin {} ({e}); removing it", pin.display());
                        let _ = std::fs::remove_file(&pin);
                    }
                }
            }
        }
        let prog = xdp_mut(&mut self.ebpf, names::PROG_XDP)?;
        let try_mode = |prog: &mut Xdp, mode: XdpMode| prog.attach(iface, mode);
        let (mode, link) = match pref {
            ModePreference::Native => try_mode(prog, XdpMode::Driver)
                .map(|l| (AttachMode::Native, l))
                .map_err(|e| attach_error(iface, "native", e))?,
            ModePreference::Skb => try_mode(prog, XdpMode::Skb)
                .map(|l| (AttachMode::Skb, l))
                .map_err(|e| attach_error(iface, "skb", e))?,
            ModePreference::Auto => match try_mode(prog, XdpMode::Driver) {
                Ok(l) => (AttachMode::Native, l),
                Err(e) => {
                    let first = attach_error(iface, "native", e);
                    let why = match &first {
                        DatapathError::AlreadyAttached { .. } => return Err(first),
                        DatapathError::Attach { detail, .. } => detail.clone(),
                        other => other.to_string(),
                    };
                    log::info!("{iface}: native XDP unavailable ({why}); using skb mode");
                    try_mode(prog, XdpMode::Skb)
                        .map(|l| (AttachMode::Skb, l))
                        .map_err(|e| attach_error(iface, "skb", e))?
                }
            },
        };
        if let Some(dir) = self.pin_dir.clone() {
            self.pin_link(iface, link, &link_pin(&dir, iface))?;
        }
        if egress {
            self.attach_egress(iface)?;
        }
        self.attachments.push(Attachment {
            iface: iface.to_owned(),
            mode,
            egress,
        });
        Ok(mode)
    }

    /// Takes the XDP link just attached on `iface` out of the program and pins it at `path`.
    fn pin_link(
        &mut self,
        iface: &str,
        id: aya::programs::xdp::XdpLinkId,
        path: &Path,
    ) -> Result<(), DatapathError> {
        let err = |detail: String| DatapathError::Attach {
            iface: iface.to_owned(),
            tried: "pinned",
            detail,
        };
        let prog = xdp_mut(&mut self.ebpf, names::PROG_XDP)?;
        let link = prog.take_link(id).map_err(|e| err(program_error_detail(&e)))?;
        match FdLink::try_from(link) {
            Ok(fd) => {
                let pinned = fd
                    .pin(path)
                    .map_err(|e| err(format!("pinning the link at {}: {e}", path.display())))?;
                let fd: FdLink = pinned.into();
                self.pinned_links.push((iface.to_owned(), path.to_owned(), fd));
            }
            Err(e) => {
                // A netlink attachment (kernels without XDP links) cannot be pinned: it stays
                // attached until the agent detaches it.
                log::warn!("{iface}: XDP attachment cannot be pinned ({e})");
            }
        }
        Ok(())
    }

    /// Detaches from `iface` (if attached), e.g. before reattaching after it came back.
    pub fn detach(&mut self, iface: &str) {
        self.attachments.retain(|a| a.iface != iface);
        if let Some(i) = self.pinned_links.iter().position(|(n, ..)| n == iface) {
            let (_, path, link) = self.pinned_links.remove(i);
            let _ = std::fs::remove_file(path);
            drop(link);
        }
    }

    fn attach_egress(&mut self, iface: &str) -> Result<(), DatapathError> {
        let err = |detail: String| DatapathError::Egress {
            iface: iface.to_owned(),
            detail,
        };
        let prog: &mut SchedClassifier = self
            .ebpf
            .program_mut(names::PROG_TC_EGRESS)
            .ok_or_else(|| err("program missing from the object".into()))?
            .try_into()
            .map_err(|e: ProgramError| err(e.to_string()))?;
        if prog.fd().is_err() {
            prog.load().map_err(|e| err(program_error_detail(&e)))?;
        }
        // Kernels >= 6.6 attach through a TCX link and need no qdisc; older ones need clsact.
        if let Err(first) = prog.attach(iface, TcAttachType::Egress) {
            let _ = tc::qdisc_add_clsact(iface);
            prog.attach(iface, TcAttachType::Egress).map_err(|e| {
                err(format!(
                    "{} (first try: {})",
                    program_error_detail(&e),
                    program_error_detail(&first)
                ))
            })?;
        }
        Ok(())
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

    /// Per-protocol packet and byte counters, summed over CPUs, in [`Proto::ALL`] order.
    pub fn proto_counters(&self) -> Result<Vec<(Proto, ProtoCounter)>, DatapathError> {
        let map = self.ebpf.map(names::MAP_PROTO_STATS).ok_or(DatapathError::Map {
            map: names::MAP_PROTO_STATS,
            detail: "not in the program object".into(),
        })?;
        let arr: PerCpuArray<_, ProtoCounter> =
            PerCpuArray::try_from(map).map_err(map_err(names::MAP_PROTO_STATS))?;
        Proto::ALL
            .iter()
            .map(|&p| {
                let v = arr.get(&(p as u32), 0).map_err(map_err(names::MAP_PROTO_STATS))?;
                Ok((p, ProtoCounter::sum(v.iter())))
            })
            .collect()
    }

    /// Parser event counters, summed over CPUs, in [`Event::ALL`] order.
    pub fn event_counters(&self) -> Result<Vec<(Event, u64)>, DatapathError> {
        let map = self.map(names::MAP_EVENTS)?;
        let arr: PerCpuArray<_, u64> = PerCpuArray::try_from(map).map_err(map_err(names::MAP_EVENTS))?;
        Event::ALL
            .iter()
            .map(|&e| {
                let v = arr.get(&(e as u32), 0).map_err(map_err(names::MAP_EVENTS))?;
                Ok((e, v.iter().fold(0u64, |a, b| a.wrapping_add(*b))))
            })
            .collect()
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

    /// Moves the program's log records to the agent's logger.
    pub fn flush_logs(&mut self) {
        if let Some(l) = self.logger.as_mut() {
            l.flush();
        }
    }
}

fn xdp_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp, DatapathError> {
    ebpf.program_mut(name)
        .ok_or_else(|| load_err(format!("program {name} missing from the object")))?
        .try_into()
        .map_err(|e: ProgramError| load_err(e))
}

fn io_error_of(e: &ProgramError) -> Option<&io::Error> {
    match e {
        ProgramError::SyscallError(s) => Some(&s.io_error),
        ProgramError::LoadError { io_error, .. } => Some(io_error),
        _ => None,
    }
}

fn program_error_detail(e: &ProgramError) -> String {
    match e {
        // Keep the verifier's verdict (its last lines), not the whole log.
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            log::debug!("verifier log:\n{log}");
            let tail: Vec<&str> = log.lines().rev().take(6).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            format!("{io_error}; verifier: {}", tail.join(" | "))
        }
        other => {
            let mut s = other.to_string();
            if let Some(io) = io_error_of(other) {
                s = format!("{s} ({io})");
            }
            s
        }
    }
}

fn attach_error(iface: &str, tried: &'static str, e: ProgramError) -> DatapathError {
    let os = io_error_of(&e).and_then(io::Error::raw_os_error).or_else(|| {
        // The netlink fallback reports the errno inside its own error type.
        let s = e.to_string();
        (s.contains("Device or resource busy") || s.contains("File exists")).then_some(libc::EBUSY)
    });
    if matches!(os, Some(libc::EBUSY) | Some(libc::EEXIST)) {
        return DatapathError::AlreadyAttached {
            iface: iface.to_owned(),
        };
    }
    DatapathError::Attach {
        iface: iface.to_owned(),
        tried,
        detail: program_error_detail(&e),
    }
}
