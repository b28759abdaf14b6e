//! The real servers the scenarios attack and use, started inside the server namespace with
//! configuration files in the scenario's scratch directory (never the host's services): sshd,
//! vsftpd, an HTTP package mirror (python3 http.server), an HTTP admin page behind basic
//! authentication (python3, HTTP/1.1 keep-alive, as nginx or Apache answer), dnsmasq, and an
//! HTTPS
//! command-and-control server (openssl s_server) at the C2 address. They die with the
//! recording ([`KillOnDrop`]).
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{
    Netns,
    corpus::scenarios::{C2, SERVER_V4, SERVER_V6},
    servers::{KillOnDrop, self_signed_cert, tool},
};

/// The running servers.
pub struct Servers {
    _procs: Vec<KillOnDrop>,
}

/// TCP ports that must be listening before the recording starts, and the UDP one.
const TCP_PORTS: [u16; 5] = [21, 22, 80, 443, 8080];
const UDP_PORT: u16 = 53;

/// Writes the servers' files into `dir` and starts them in `ns`.
pub fn start(ns: &Netns, dir: &Path) -> Result<Servers> {
    let procs = vec![
        spawn(ns, dir, "sshd", sshd(dir)?, dir)?,
        spawn(ns, dir, "vsftpd", vsftpd(dir)?, dir)?,
        spawn(ns, dir, "http", http(dir)?, dir)?,
        spawn(ns, dir, "http-auth", http_auth(dir)?, dir)?,
        spawn(ns, dir, "dnsmasq", dnsmasq(dir)?, dir)?,
        // -WWW serves files relative to its working directory.
        spawn(ns, dir, "c2", c2(dir)?, &dir.join("c2"))?,
    ];
    let servers = Servers { _procs: procs };
    wait_listening(ns)?;
    Ok(servers)
}

fn program(name: &str) -> Result<PathBuf> {
    let found = tool(name).or_else(|| {
        let sbin = Path::new("/usr/sbin").join(name);
        sbin.is_file().then_some(sbin)
    });
    found.with_context(|| format!("{name} is not installed: run `cargo xtask setup --corpus`"))
}

/// Runs a preparation command to its end (key generation), failing with its stderr.
fn prepare(c: &mut Command) -> Result<()> {
    let out = c.output().with_context(|| format!("cannot run {c:?}"))?;
    if !out.status.success() {
        bail!("{c:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Starts `argv` in `ns` with its working directory `cwd`, its output in `dir/NAME.log`.
fn spawn(ns: &Netns, dir: &Path, name: &str, argv: Vec<String>, cwd: &Path) -> Result<KillOnDrop> {
    let log = fs::File::create(dir.join(format!("{name}.log")))?;
    let mut c = ns.command(program(&argv[0])?);
    c.args(&argv[1..])
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let child = c.spawn().with_context(|| format!("starting {name}"))?;
    Ok(KillOnDrop(child))
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// OpenSSH on port 22 (both families): passwords for hydra to guess (no account it can
/// reach: only root may log in, and root only with the scenario's own key), the key for the
/// client's interactive sessions.
fn sshd(dir: &Path) -> Result<Vec<String>> {
    let hostkey = dir.join("ssh_host_ed25519_key");
    let userkey = dir.join("id_lab");
    for key in [&hostkey, &userkey] {
        prepare(
            Command::new(program("ssh-keygen")?)
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(key),
        )?;
    }
    fs::copy(dir.join("id_lab.pub"), dir.join("authorized_keys"))?;
    // sshd's privilege separation directory, which Debian's service creates at start.
    fs::create_dir_all("/run/sshd").context("creating /run/sshd")?;
    let config = dir.join("sshd_config");
    fs::write(
        &config,
        format!(
            "ListenAddress 0.0.0.0\nListenAddress ::\nPort 22\nHostKey {}\nPidFile none\n\
             UsePAM no\nPasswordAuthentication yes\nKbdInteractiveAuthentication no\n\
             PermitRootLogin prohibit-password\nAllowUsers root\nAuthorizedKeysFile {}\n\
             StrictModes no\nPrintMotd no\nPrintLastLog no\nMaxStartups 100\nLogLevel ERROR\n",
            hostkey.display(),
            dir.join("authorized_keys").display()
        ),
    )?;
    Ok(vec![
        "/usr/sbin/sshd".into(),
        "-D".into(),
        "-e".into(),
        "-f".into(),
        path_str(&config),
    ])
}

/// vsftpd on port 21: local users through PAM (hydra's guesses fail there).
fn vsftpd(dir: &Path) -> Result<Vec<String>> {
    let empty = dir.join("vsftpd-empty");
    fs::create_dir_all(&empty)?;
    let config = dir.join("vsftpd.conf");
    fs::write(
        &config,
        format!(
            "listen=YES\nlisten_ipv6=NO\nlisten_address={SERVER_V4}\nbackground=NO\n\
             anonymous_enable=NO\nlocal_enable=YES\npam_service_name=vsftpd\n\
             secure_chroot_dir={}\nseccomp_sandbox=NO\nisolate=NO\nisolate_network=NO\n\
             xferlog_enable=NO\nmax_clients=0\nmax_per_ip=0\n",
            empty.display()
        ),
    )?;
    Ok(vec!["vsftpd".into(), path_str(&config)])
}

/// A Debian-like package mirror and a few web pages on port 80 (both families).
fn http(dir: &Path) -> Result<Vec<String>> {
    let www = dir.join("www");
    let files: [(&str, usize); 6] = [
        ("index.html", 2_300),
        ("news.html", 6_100),
        ("debian/dists/bookworm/InRelease", 4_200),
        ("debian/dists/bookworm/main/binary-amd64/Packages.xz", 180_000),
        ("debian/pool/main/libfoo1_1.2-1_amd64.deb", 300_000),
        ("debian/pool/main/foo-utils_1.2-1_amd64.deb", 400_000),
    ];
    for (i, (name, len)) in files.iter().enumerate() {
        let path = www.join(name);
        fs::create_dir_all(path.parent().unwrap_or(&www))?;
        fs::write(&path, filler(*len, i as u64))?;
    }
    Ok(vec![
        "python3".into(),
        "-m".into(),
        "http.server".into(),
        "80".into(),
        "--bind".into(),
        "::".into(),
        "--directory".into(),
        path_str(&www),
    ])
}

/// The admin page of [`http_auth`]: user `admin`, a password not in the word list.
const HTTP_AUTH_SERVER: &str = r#"
import base64, http.server, socket, sys

GOOD = "Basic " + base64.b64encode(b"admin:not-in-the-list").decode()

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as nginx and Apache answer

    def do_GET(self):
        ok = self.headers.get("Authorization") == GOOD
        body = b"<h1>admin</h1>\n" if ok else b"<h1>401 Unauthorized</h1>\n"
        self.send_response(200 if ok else 401)
        if not ok:
            self.send_header("WWW-Authenticate", 'Basic realm="lab admin"')
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

class Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6

Server(("::", int(sys.argv[1])), Handler).serve_forever()
"#;

/// An admin page behind HTTP basic authentication on port 8080 (both families), for the
/// HTTP password-guessing scenario.
fn http_auth(dir: &Path) -> Result<Vec<String>> {
    let script = dir.join("http_auth.py");
    fs::write(&script, HTTP_AUTH_SERVER)?;
    Ok(vec!["python3".into(), path_str(&script), "8080".into()])
}

/// `len` bytes that do not compress (a package's contents), the same for the same `seed`.
fn filler(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// dnsmasq on port 53 (both families), authoritative for `lab.example` only.
fn dnsmasq(dir: &Path) -> Result<Vec<String>> {
    let args = [
        "dnsmasq".to_owned(),
        "--keep-in-foreground".into(),
        "--conf-file=/dev/null".into(),
        "--no-resolv".into(),
        "--no-hosts".into(),
        "--bind-interfaces".into(),
        format!("--listen-address={SERVER_V4}"),
        format!("--listen-address={SERVER_V6}"),
        format!("--pid-file={}", dir.join("dnsmasq.pid").display()),
        "--log-facility=-".into(),
        "--local=/lab.example/".into(),
        format!("--host-record=www.lab.example,{SERVER_V4},{SERVER_V6}"),
        format!("--host-record=mirror.lab.example,{SERVER_V4},{SERVER_V6}"),
        format!("--host-record=lab.example,{SERVER_V4}"),
        "--mx-host=lab.example,mail.lab.example,10".into(),
        "--txt-record=lab.example,v=spf1 -all".into(),
        "--ptr-record=2.3.18.198.in-addr.arpa,www.lab.example".into(),
    ];
    Ok(args.to_vec())
}

/// The beacons' HTTPS command-and-control server: `openssl s_server -WWW` at the C2 address,
/// a fresh self-signed certificate, one task file.
fn c2(dir: &Path) -> Result<Vec<String>> {
    let c2 = dir.join("c2");
    fs::create_dir_all(&c2)?;
    fs::write(c2.join("beacon"), "{\"task\":\"sleep\",\"interval\":5}\n")?;
    let (cert, key) = self_signed_cert(dir, "c2.lab.example")?;
    Ok(vec![
        "openssl".into(),
        "s_server".into(),
        "-quiet".into(),
        "-WWW".into(),
        "-accept".into(),
        format!("{C2}:443"),
        "-cert".into(),
        path_str(&cert),
        "-key".into(),
        path_str(&key),
    ])
}

/// Waits (at most 10 s) until every server listens, so no probe of a scenario meets a port
/// that is still closed.
fn wait_listening(ns: &Netns) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = ns
            .command(program("ss")?)
            .args(["-H", "-l", "-n", "-t", "-u"])
            .output()
            .context("running ss in the server namespace")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let listening = |proto: &str, port: u16| {
            text.lines().any(|l| {
                l.starts_with(proto)
                    && l.split_whitespace()
                        .nth(4)
                        .is_some_and(|a| a.ends_with(&format!(":{port}")))
            })
        };
        let missing: Vec<u16> = TCP_PORTS
            .iter()
            .copied()
            .filter(|p| !listening("tcp", *p))
            .collect();
        let udp_missing = !listening("udp", UDP_PORT);
        if missing.is_empty() && !udp_missing {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "servers not listening after 10 s (TCP ports {missing:?}, DNS missing: {udp_missing}); \
                 see their logs (sshd.log, vsftpd.log, http.log, http-auth.log, dnsmasq.log, c2.log)"
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
