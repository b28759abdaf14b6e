//! Batched map syscalls (`BPF_MAP_LOOKUP_BATCH`, `BPF_MAP_LOOKUP_AND_DELETE_BATCH`,
//! `BPF_MAP_DELETE_BATCH`), which aya 0.14 does not offer.
//!
//! Reading a hash map one element at a time costs two syscalls per element (next key, then
//! lookup): about a microsecond each, far too slow to drain a million flows. One batch call
//! moves thousands of elements (see `cargo xtask bench`).
use std::{
    io,
    marker::PhantomData,
    os::fd::{AsFd, AsRawFd, BorrowedFd},
};

use aya::Pod;

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_LOOKUP_AND_DELETE_BATCH: libc::c_long = 25;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;

/// `union bpf_attr` as the batch commands use it.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

fn bpf(cmd: libc::c_long, attr: &mut BatchAttr) -> io::Result<()> {
    // SAFETY: attr is a valid, fully initialized bpf_attr prefix of the size we pass; the
    // buffers it points to outlive the call and are as large as `count` says.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut BatchAttr as *mut libc::c_void,
            size_of::<BatchAttr>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Reads a whole hash map, `chunk` elements per syscall, calling `f` for every element.
/// With `delete`, each chunk is removed as it is read (atomically per element).
pub fn for_each<K: Pod + Default, V: Pod + Default>(
    fd: BorrowedFd<'_>,
    chunk: usize,
    delete: bool,
    mut f: impl FnMut(&K, &V),
) -> io::Result<usize> {
    for_each_chunk(fd, chunk, delete, |keys: &[K], values: &[V]| {
        for (k, v) in keys.iter().zip(values) {
            f(k, v);
        }
    })
}

/// Like [`for_each`], but hands over each syscall's chunk whole (keys and values of equal
/// length), so the caller can act per chunk (e.g. delete what it picked from it).
pub fn for_each_chunk<K: Pod + Default, V: Pod + Default>(
    fd: BorrowedFd<'_>,
    chunk: usize,
    delete: bool,
    mut f: impl FnMut(&[K], &[V]),
) -> io::Result<usize> {
    let chunk = chunk.max(1);
    let mut keys = vec![K::default(); chunk];
    let mut values = vec![V::default(); chunk];
    // The batch token is opaque; for hash maps it is a u32 bucket index. 8 bytes suffice.
    let mut token_in = 0u64;
    let mut token_out = 0u64;
    let mut first = true;
    let mut total = 0;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first {
                0
            } else {
                &mut token_in as *mut u64 as u64
            },
            out_batch: &mut token_out as *mut u64 as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: chunk as u32,
            map_fd: fd.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        let cmd = if delete {
            BPF_MAP_LOOKUP_AND_DELETE_BATCH
        } else {
            BPF_MAP_LOOKUP_BATCH
        };
        let res = bpf(cmd, &mut attr);
        let n = (attr.count as usize).min(chunk);
        if n > 0 {
            f(&keys[..n], &values[..n]);
        }
        total += n;
        match res {
            Ok(()) => {}
            // ENOENT: the end of the map (the last chunk may still carry elements).
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(total),
            Err(e) => return Err(e),
        }
        token_in = token_out;
        first = false;
    }
}

/// Deletes `keys` from a hash map in one syscall; keys already gone are skipped.
pub fn delete<K: Pod>(fd: BorrowedFd<'_>, keys: &[K]) -> io::Result<usize> {
    let mut deleted = 0;
    let mut rest = keys;
    while !rest.is_empty() {
        let mut attr = BatchAttr {
            keys: rest.as_ptr() as u64,
            count: rest.len() as u32,
            map_fd: fd.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        let res = bpf(BPF_MAP_DELETE_BATCH, &mut attr);
        let n = attr.count as usize;
        deleted += n;
        match res {
            Ok(()) => return Ok(deleted),
            // A key that vanished (evicted, or deleted by the kernel) stops the batch at its
            // position: skip it and go on.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => rest = &rest[(n + 1).min(rest.len())..],
            Err(e) => return Err(e),
        }
    }
    Ok(deleted)
}

/// Inserts or replaces `keys[i] -> values[i]` in one syscall per chunk (benchmarks and tests
/// fill maps with it).
pub fn update<K: Pod, V: Pod>(fd: BorrowedFd<'_>, keys: &[K], values: &[V]) -> io::Result<usize> {
    let n = keys.len().min(values.len());
    let mut done = 0;
    while done < n {
        let mut attr = BatchAttr {
            keys: keys[done..].as_ptr() as u64,
            values: values[done..].as_ptr() as u64,
            count: (n - done) as u32,
            map_fd: fd.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        let res = bpf(BPF_MAP_UPDATE_BATCH, &mut attr);
        done += attr.count as usize;
        res?;
        if attr.count == 0 {
            break;
        }
    }
    Ok(done)
}

/// A typed view for the common case.
pub struct BatchMap<'a, K, V> {
    fd: BorrowedFd<'a>,
    _t: PhantomData<(K, V)>,
}

impl<'a, K: Pod + Default, V: Pod + Default> BatchMap<'a, K, V> {
    pub fn new(fd: &'a impl AsFd) -> Self {
        Self {
            fd: fd.as_fd(),
            _t: PhantomData,
        }
    }
    pub fn for_each(&self, chunk: usize, f: impl FnMut(&K, &V)) -> io::Result<usize> {
        for_each(self.fd, chunk, false, f)
    }
    pub fn for_each_chunk(&self, chunk: usize, f: impl FnMut(&[K], &[V])) -> io::Result<usize> {
        for_each_chunk(self.fd, chunk, false, f)
    }
    pub fn drain(&self, chunk: usize, f: impl FnMut(&K, &V)) -> io::Result<usize> {
        for_each(self.fd, chunk, true, f)
    }
    pub fn delete(&self, keys: &[K]) -> io::Result<usize> {
        delete(self.fd, keys)
    }
    pub fn update(&self, keys: &[K], values: &[V]) -> io::Result<usize> {
        update(self.fd, keys, values)
    }
}
