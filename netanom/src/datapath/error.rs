//! What can go wrong loading, attaching and reading the XDP program, and what to do about it.
use std::{fmt, io};

use aya::{maps::MapError, programs::ProgramError};
use thiserror::Error;

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

pub(super) fn load_err(e: impl fmt::Display) -> DatapathError {
    DatapathError::Load {
        detail: e.to_string(),
    }
}

pub(super) fn map_err(map: &'static str) -> impl Fn(MapError) -> DatapathError {
    move |e| DatapathError::Map {
        map,
        detail: e.to_string(),
    }
}

fn io_error_of(e: &ProgramError) -> Option<&io::Error> {
    match e {
        ProgramError::SyscallError(s) => Some(&s.io_error),
        ProgramError::LoadError { io_error, .. } => Some(io_error),
        _ => None,
    }
}

pub(super) fn program_error_detail(e: &ProgramError) -> String {
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

pub(super) fn attach_error(iface: &str, tried: &'static str, e: ProgramError) -> DatapathError {
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
