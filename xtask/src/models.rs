//! The Python model pipeline in `models/` (training, evaluation, tests), run from xtask.
//!
//! Everything runs with the virtualenv `models/.venv`. It is created on first use and re-synced
//! with `models/requirements.txt` whenever that file changes: the sha256 of the requirements
//! that were installed is kept in a stamp file inside the venv.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context, bail};

/// Stamp file (inside the venv): sha256 of the requirements.txt that was installed.
const STAMP: &str = ".netanom-requirements.sha256";

/// The workspace root (the parent of xtask/).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn models_dir() -> PathBuf {
    root().join("models")
}

/// Creates `models/.venv` if missing and pip-installs `models/requirements.txt` when it changed
/// since the last successful install. Prints one line saying what it did. Returns the venv's
/// python.
pub fn ensure_venv() -> anyhow::Result<PathBuf> {
    let models = models_dir();
    let requirements = models.join("requirements.txt");
    let venv = models.join(".venv");
    let python = venv.join("bin").join("python");
    let stamp = venv.join(STAMP);

    let wanted = sha256_hex(
        &fs::read(&requirements).with_context(|| format!("cannot read {}", requirements.display()))?,
    );
    let started = Instant::now();
    let created = !python.exists();
    let had_stamp = stamp.exists();
    if created {
        let mut c = Command::new("python3");
        c.args(["-m", "venv"]).arg(&venv).current_dir(&models);
        run(c, "python3 -m venv models/.venv")
            .context("is python3 (>= 3.11, with the venv module) installed?")?;
    } else if fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == wanted) {
        println!(
            "[ok]        models venv: models/.venv matches requirements.txt (sha256 {})",
            &wanted[..12]
        );
        return Ok(python);
    }

    // An interrupted install must not look complete: drop the old stamp first.
    match fs::remove_file(&stamp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot remove {}", stamp.display())),
    }
    let mut c = Command::new(&python);
    c.args(["-m", "pip", "install", "--quiet", "-r"])
        .arg(&requirements)
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .current_dir(&models);
    run(c, "pip install -r models/requirements.txt").context(
        "installing the model pipeline's Python packages failed; if models/.venv is broken, delete it and retry",
    )?;
    fs::write(&stamp, format!("{wanted}\n")).with_context(|| format!("cannot write {}", stamp.display()))?;
    let what = match (created, had_stamp) {
        (true, _) => "created",
        (false, true) => "requirements changed; updated",
        (false, false) => "no install stamp; synced",
    };
    println!(
        "[installed] models venv: {what} models/.venv, installed requirements.txt (sha256 {}) ({:.0}s)",
        &wanted[..12],
        started.elapsed().as_secs_f64()
    );
    Ok(python)
}

/// `python -m netanom_models train ARGS` (in models/, with the venv).
pub fn train(args: &[String]) -> anyhow::Result<()> {
    run_module("train", args)
}

/// `python -m netanom_models eval ARGS` (in models/, with the venv).
pub fn eval(args: &[String]) -> anyhow::Result<()> {
    run_module("eval", args)
}

/// `python -m netanom_models rf-sweep|if-sweep ARGS` (in models/, with the venv).
pub fn sweep(kind: &str, args: &[String]) -> anyhow::Result<()> {
    match kind {
        "rf" => run_module("rf-sweep", args),
        "if" => run_module("if-sweep", args),
        other => {
            anyhow::bail!("unknown sweep `{other}`: use `rf` (Random Forest) or `if` (Isolation Forest)")
        }
    }
}

/// Runs the pytest suite in models/tests. "No tests collected" (exit code 5) is an error.
pub fn pytest() -> anyhow::Result<()> {
    let python = ensure_venv()?;
    let status = Command::new(&python)
        .args(["-m", "pytest", "-q", "tests"])
        .current_dir(models_dir())
        .status()
        .context("could not start `python -m pytest`")?;
    match status.code() {
        Some(0) => Ok(()),
        Some(5) => bail!("pytest collected no tests in models/tests"),
        _ => bail!("the model pipeline's tests failed (`python -m pytest -q tests` in models/: {status})"),
    }
}

fn run_module(command: &str, args: &[String]) -> anyhow::Result<()> {
    let python = ensure_venv()?;
    // The pipeline runs in models/; relative paths on its command line are the caller's.
    let caller = std::env::current_dir().context("cannot read the current directory")?;
    let status = Command::new(&python)
        .args(["-m", "netanom_models", command])
        .args(args)
        .env("NETANOM_CALLER_DIR", caller)
        .current_dir(models_dir())
        .status()
        .with_context(|| format!("could not start `python -m netanom_models {command}`"))?;
    if !status.success() {
        bail!(
            "`python -m netanom_models {command} {}` failed ({status})",
            args.join(" ")
        );
    }
    Ok(())
}

fn run(mut c: Command, what: &str) -> anyhow::Result<()> {
    let status = c.status().with_context(|| format!("could not start `{what}`"))?;
    if !status.success() {
        bail!("`{what}` failed ({status})");
    }
    Ok(())
}

/// SHA-256 (FIPS 180-4) of `data`, lowercase hex. std has none, and xtask keeps its
/// dependencies to std + anyhow.
fn sha256_hex(data: &[u8]) -> String {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
    ];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 64];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16].wrapping_add(s0).wrapping_add(w[i - 7]).wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(y);
        }
    }
    h.iter().map(|x| format!("{x:08x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::sha256_hex;

    #[test]
    fn sha256_known_vectors() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // 56 bytes: the padding needs a second block.
        assert_eq!(
            sha256_hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
    }
}
