//! The faults the fault tests inject around the binary: an immutable database file, a small
//! tmpfs that fills up; and what they check of the answers.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::support::{is_root, skip_or_fail, text};

/// `.ci/run` runs as root, so CI can make files immutable and mount a tmpfs.
const ROOT_HOW: &str = "run the tests as root (.ci/run does)";

/// A passenger_demographics row whose name marks it as the test's.
pub fn demographics(name: &str) -> Value {
    json!({
        "pclass": 2, "sex": "female", "age": 33, "sibsp": 0, "parch": 1, "fare": 21.0,
        "embarked": "S", "name": name,
    })
}

/// Checks an error response: JSON `{"error":{"code","message"}}`; returns (status, code, message).
pub async fn error_of(r: reqwest::Response) -> (u16, String, String) {
    let status = r.status().as_u16();
    let body: Value = r.json().await.expect("a JSON error body");
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!code.is_empty() && !message.is_empty(), "{body}");
    (status, code, message)
}

/// Every `titanic_http_requests_total` sample with a 5xx status.
pub fn server_errors(metrics: &str) -> Vec<String> {
    metrics
        .lines()
        .filter(|l| l.starts_with("titanic_http_requests_total{") && l.contains("status=\"5"))
        .map(str::to_owned)
        .collect()
}

fn sh(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            text(&out.stderr).trim()
        ))
    }
}

/// Files made immutable (`chattr +i`): on ext4 even root's writes through descriptors opened
/// before fail with EPERM (file permissions would not stop root, nor an open descriptor).
/// The flag is cleared again on drop.
pub struct Immutable {
    files: Vec<PathBuf>,
}

impl Immutable {
    /// Checks that `chattr +i` stops a write through an already open descriptor in `dir`;
    /// `None` (after [`skip_or_fail`]) when it does not here.
    pub fn supported_in(dir: &Path) -> Option<()> {
        use std::io::Write;
        if !is_root() {
            skip_or_fail("chattr +i needs root (CAP_LINUX_IMMUTABLE)", ROOT_HOW);
            return None;
        }
        let probe = dir.join("immutable-probe");
        std::fs::write(&probe, b"probe").unwrap();
        let mut open = std::fs::OpenOptions::new()
            .append(true)
            .open(&probe)
            .unwrap();
        let set = sh("chattr", &["+i", probe.to_str().unwrap()]);
        let refused = set.is_ok() && open.write_all(b"more").is_err();
        let _ = sh("chattr", &["-i", probe.to_str().unwrap()]);
        drop(open);
        let _ = std::fs::remove_file(&probe);
        match (set, refused) {
            (Ok(()), true) => Some(()),
            (Err(e), _) => {
                skip_or_fail(
                    &format!("chattr +i does not work in {}: {e}", dir.display()),
                    "a scratch directory on ext4 (the build directory's)",
                );
                None
            }
            (Ok(()), false) => {
                skip_or_fail(
                    &format!(
                        "the file system of {} ignores the immutable flag for open files",
                        dir.display()
                    ),
                    "a scratch directory on ext4 (the build directory's)",
                );
                None
            }
        }
    }

    pub fn set(files: &[PathBuf]) -> Immutable {
        for f in files {
            let name = f.to_str().unwrap();
            sh("chattr", &["+i", name]).unwrap_or_else(|e| panic!("{e}"));
        }
        Immutable {
            files: files.to_vec(),
        }
    }

    pub fn lift(mut self) {
        self.clear();
    }

    fn clear(&mut self) {
        for f in self.files.drain(..) {
            let _ = sh("chattr", &["-i", f.to_str().unwrap()]);
        }
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        self.clear();
    }
}

/// A small tmpfs mounted on a directory: a disk that fills up. Unmounted on drop.
pub struct Tmpfs {
    pub dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`mount -o size=`) on `dir`; `None` (after [`skip_or_fail`])
    /// when mounting is not possible here.
    pub fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        if !is_root() {
            skip_or_fail("mounting a tmpfs needs root", ROOT_HOW);
            return None;
        }
        let options = format!("size={size},mode=0755");
        match sh(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &options,
                "tmpfs",
                dir.to_str().unwrap(),
            ],
        ) {
            Ok(()) => Some(Tmpfs {
                dir: dir.to_path_buf(),
            }),
            Err(e) => {
                skip_or_fail(&format!("cannot mount a tmpfs: {e}"), ROOT_HOW);
                None
            }
        }
    }

    /// Writes `filler` until the file system is full; returns the bytes written.
    pub fn fill(&self, filler: &Path) -> u64 {
        use std::io::Write;
        let mut file = std::fs::File::create(filler).unwrap();
        let chunk = vec![0xA5u8; 64 * 1024];
        let mut written = 0u64;
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(_) => break,
            }
        }
        // The last partial pages too.
        loop {
            match file.write(&chunk[..512]) {
                Ok(n) if n > 0 => written += n as u64,
                _ => break,
            }
        }
        let _ = file.sync_all();
        written
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let dir = self.dir.to_str().unwrap();
        if sh("umount", &[dir]).is_err() {
            let _ = sh("umount", &["-l", dir]);
        }
    }
}
