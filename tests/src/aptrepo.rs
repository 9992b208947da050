//! A real signed apt repository on 127.0.0.1 (ephemeral port).
//!
//! * an ed25519 signing key made with `gpg --quick-gen-key` in a temp `GNUPGHOME` that lies
//!   outside the served directory;
//! * one tiny package, [`DUMMY_PACKAGE`], built with `dpkg-deb --build`;
//! * `Packages` from `dpkg-scanpackages`, a `Release` with MD5Sum and SHA256, signed into
//!   `InRelease` (clearsigned) and `Release.gpg` (detached);
//! * served by `python3 -m http.server --bind 127.0.0.1 PORT`, which dies when the repo is dropped
//!   or, for the shared instance, when the test process exits (a watchdog reads our pipe).
//!
//! ```no_run
//! let repo = testkit::aptrepo::AptRepo::shared();
//! let line = format!("deb {} {} main", repo.url(), testkit::aptrepo::SUITE);
//! ```

use sha2::{Digest, Sha256};
use std::fs;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The suite (codename) the repo serves, component `main`.
pub const SUITE: &str = "bootcfg-test";
/// The package the repo holds (architecture `all`).
pub const DUMMY_PACKAGE: &str = "bootcfg-test-dummy";
pub const DUMMY_VERSION: &str = "1.0-1";
/// The file the package installs.
pub const DUMMY_FILE: &str = "/usr/share/bootcfg-test-dummy/installed-from-local-repo";

pub struct AptRepo {
    _dir: tempfile::TempDir,
    port: u16,
    armored_key: String,
    key_bytes: Vec<u8>,
    fingerprint: String,
    server: Child,
    _watchdog_pipe: ChildStdin,
}

fn run(cmd: &mut Command, what: &str) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}; {}", crate::rootfs::SETUP_HINT));
    assert!(
        out.status.success(),
        "{what} failed ({:?}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

impl AptRepo {
    /// One repo shared by every test of the test binary (built on first use, about 1 s).
    pub fn shared() -> &'static AptRepo {
        static REPO: OnceLock<AptRepo> = OnceLock::new();
        REPO.get_or_init(AptRepo::start)
    }

    /// Builds, signs and serves a new repo.
    pub fn start() -> AptRepo {
        AptRepo::start_with(&[])
    }

    /// Builds, signs and serves a new repo that also holds `extra_debs` (copied into its pool and
    /// indexed with the test package): a local mirror of real Debian packages.
    pub fn start_with(extra_debs: &[PathBuf]) -> AptRepo {
        for tool in ["gpg", "dpkg-deb", "dpkg-scanpackages", "python3"] {
            crate::rootfs::require_tool(tool);
        }
        let tmp = crate::rootfs::test_home().join("tmp");
        fs::create_dir_all(&tmp).expect("creating $BOOTCFG_TEST_HOME/tmp");
        let dir = tempfile::Builder::new()
            .prefix("aptrepo-")
            .tempdir_in(&tmp)
            .expect("temp dir");
        let gnupg = dir.path().join("gnupg");
        let www = dir.path().join("www");
        fs::create_dir_all(&gnupg).expect("mkdir gnupg");
        fs::set_permissions(&gnupg, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .expect("chmod gnupg");
        let gpg = |args: &[&str]| {
            let mut c = Command::new("gpg");
            c.arg("--homedir")
                .arg(&gnupg)
                .args(["--batch", "--quiet", "--no-tty"])
                .args(args);
            c
        };
        let uid = "bootcfg test repo <apt-repo@bootcfg.invalid>";
        run(
            &mut gpg(&[
                "--passphrase",
                "",
                "--quick-gen-key",
                uid,
                "ed25519",
                "sign",
                "never",
            ]),
            "gpg --quick-gen-key",
        );
        let armored_key = String::from_utf8(run(
            &mut gpg(&["--armor", "--export", uid]),
            "gpg --export --armor",
        ))
        .expect("ascii");
        let key_bytes = run(&mut gpg(&["--export", uid]), "gpg --export");
        let colons = String::from_utf8(run(
            &mut gpg(&["--with-colons", "--list-keys", uid]),
            "gpg --list-keys",
        ))
        .expect("utf8");
        let fingerprint = colons
            .lines()
            .find_map(|l| {
                l.strip_prefix("fpr:")
                    .map(|r| r.trim_matches(':').to_owned())
            })
            .expect("fingerprint in gpg --with-colons output");

        // The package.
        let pkgdir = dir.path().join("pkg");
        let payload = pkgdir.join(DUMMY_FILE.trim_start_matches('/'));
        fs::create_dir_all(payload.parent().expect("parent")).expect("mkdir payload");
        fs::write(&payload, "installed from the bootcfg test repo\n").expect("payload");
        fs::create_dir_all(pkgdir.join("DEBIAN")).expect("mkdir DEBIAN");
        fs::write(
            pkgdir.join("DEBIAN/control"),
            format!(
                "Package: {DUMMY_PACKAGE}\nVersion: {DUMMY_VERSION}\nArchitecture: all\nMaintainer: bootcfg tests <tests@bootcfg.invalid>\n\
                 Section: misc\nPriority: optional\nDescription: bootcfg end-to-end test package\n \
                 Installed from the signed apt repo the test harness serves on 127.0.0.1.\n"
            ),
        )
        .expect("control");
        let pool = www.join("pool/main/b").join(DUMMY_PACKAGE);
        fs::create_dir_all(&pool).expect("mkdir pool");
        let deb = pool.join(format!("{DUMMY_PACKAGE}_{DUMMY_VERSION}_all.deb"));
        run(
            Command::new("dpkg-deb")
                .args(["--root-owner-group", "--build"])
                .arg(&pkgdir)
                .arg(&deb),
            "dpkg-deb --build",
        );

        let mirror = www.join("pool/main/mirror");
        fs::create_dir_all(&mirror).expect("mkdir pool/main/mirror");
        for deb in extra_debs {
            let name = deb.file_name().expect("a .deb file name");
            fs::copy(deb, mirror.join(name))
                .unwrap_or_else(|e| panic!("copying {} into the repo: {e}", deb.display()));
        }

        // Indexes.
        let bin = format!("dists/{SUITE}/main/binary-amd64");
        fs::create_dir_all(www.join(&bin)).expect("mkdir dists");
        let packages = run(
            Command::new("dpkg-scanpackages")
                .args(["--multiversion", "pool"])
                .current_dir(&www)
                .stderr(Stdio::null()),
            "dpkg-scanpackages",
        );
        assert!(
            !packages.is_empty(),
            "dpkg-scanpackages produced an empty Packages file"
        );
        fs::write(www.join(&bin).join("Packages"), &packages).expect("Packages");
        let rel_path = "main/binary-amd64/Packages";
        let md5 = run(
            Command::new("md5sum").arg(www.join(&bin).join("Packages")),
            "md5sum",
        );
        let md5 = String::from_utf8_lossy(&md5)
            .split_whitespace()
            .next()
            .expect("md5")
            .to_owned();
        let sha = hex::encode(Sha256::digest(&packages));
        let date = chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S UTC");
        let release = format!(
            "Origin: bootcfg-test\nLabel: bootcfg-test\nSuite: {SUITE}\nCodename: {SUITE}\nDate: {date}\n\
             Architectures: amd64 all\nComponents: main\nDescription: bootcfg end-to-end test repo\n\
             MD5Sum:\n {md5} {len} {rel_path}\nSHA256:\n {sha} {len} {rel_path}\n",
            len = packages.len()
        );
        let dists = www.join("dists").join(SUITE);
        fs::write(dists.join("Release"), &release).expect("Release");
        let rel_s = dists.join("Release").display().to_string();
        let inrel = dists.join("InRelease").display().to_string();
        let relgpg = dists.join("Release.gpg").display().to_string();
        run(
            &mut gpg(&[
                "--local-user",
                &fingerprint,
                "--clearsign",
                "--output",
                &inrel,
                &rel_s,
            ]),
            "gpg --clearsign",
        );
        run(
            &mut gpg(&[
                "--local-user",
                &fingerprint,
                "--armor",
                "--detach-sign",
                "--output",
                &relgpg,
                &rel_s,
            ]),
            "gpg --detach-sign",
        );

        // gpg started an agent for the key; it would outlive the test process.
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(&gnupg)
            .args(["--kill", "all"])
            .status();
        let (server, pipe, port) = serve(&www, dir.path());
        eprintln!(
            "[testkit] signed apt repo http://127.0.0.1:{port} suite {SUITE}, key {fingerprint}"
        );
        AptRepo {
            _dir: dir,
            port,
            armored_key,
            key_bytes,
            fingerprint,
            server,
            _watchdog_pipe: pipe,
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    pub fn port(&self) -> u16 {
        self.port
    }
    /// The signing key, ASCII-armored (what user-data carries inline).
    pub fn armored_key(&self) -> &str {
        &self.armored_key
    }
    /// The signing key in binary OpenPGP form: what an armored key dearmors to.
    pub fn key_bytes(&self) -> &[u8] {
        &self.key_bytes
    }
    /// 40 hex digits, uppercase.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

impl Drop for AptRepo {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.server.id())])
            .status();
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// Starts the http server on a free port under a watchdog shell that kills it when our end of its
/// stdin pipe closes (the repo is dropped, or the test process exits: statics never drop).
fn serve(www: &Path, dir: &Path) -> (Child, ChildStdin, u16) {
    let log: PathBuf = dir.join("http.log");
    for _attempt in 0..10 {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind 127.0.0.1:0")
            .local_addr()
            .expect("addr")
            .port();
        let mut child = Command::new("/bin/sh")
            .args([
                "-c",
                r#"python3 -m http.server --bind 127.0.0.1 "$1" --directory "$2" >"$3" 2>&1 &
p=$!; trap 'kill $p 2>/dev/null; rm -rf "$4"' EXIT HUP TERM; cat >/dev/null"#,
                "apt-repo-watchdog",
            ])
            .arg(port.to_string())
            .arg(www)
            .arg(&log)
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("starting python3 -m http.server");
        let pipe = child.stdin.take().expect("stdin pipe");
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return (child, pipe, port);
            }
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(pipe);
        let _ = child.kill();
        let _ = child.wait();
        eprintln!(
            "[testkit] http.server on port {port} did not come up: {}",
            fs::read_to_string(&log).unwrap_or_default()
        );
    }
    panic!(
        "could not start python3 -m http.server for the apt repo; {}",
        crate::rootfs::SETUP_HINT
    );
}

use std::os::unix::process::CommandExt;

/// Writes `text` to a fresh file (helper for fixtures that embed the repo's URL and key).
pub fn write_file(path: &Path, text: &str) {
    let mut f =
        fs::File::create(path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
    f.write_all(text.as_bytes()).expect("write");
}
