//! Attaching the program: XDP on each interface (native mode first), the TC egress classifier
//! beside it, and pinned XDP links so the program outlives an agent that dies.
use std::path::{Path, PathBuf};

use aya::programs::{
    ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode,
    links::{FdLink, PinnedLink},
    tc,
};
use netanom_common::names;

use super::{
    config::ModePreference,
    error::{DatapathError, attach_error, program_error_detail},
    program::{AttachMode, Attachment, Datapath, xdp_mut},
};

/// Pin path of the XDP link on `iface`.
pub(super) fn link_pin(dir: &Path, iface: &str) -> PathBuf {
    dir.join(format!("link_xdp_{iface}"))
}

impl Datapath {
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
}
