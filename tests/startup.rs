//! Start-up failures caused by the environment, against the real binary: each one exits
//! non-zero with one log line that names the path or address, the user the process runs as,
//! and what to change. The cases a superuser would not meet (a directory or file it may not
//! use) run the binary as uid 65532, the image's user, through `setpriv`; they need root, and
//! skip without it (fail in CI, where `.ci/run` runs as root). And the other end of a
//! container's life: SIGTERM, the drain, exit 0 at once.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod support;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use support::{SECRET, clear_env, is_root, skip_or_fail, state_in, text};

/// The image's user (distroless `nonroot`).
const SERVICE_UID: u32 = 65532;

/// `.ci/run` runs as root, so CI runs the binary as uid 65532.
const ROOT_HOW: &str = "run the tests as root (.ci/run does)";

/// A scratch directory every user may enter (the binary is run as another user in some
/// tests), with the binary linked (or copied) into it: the build directory may be one that
/// other users cannot reach.
struct Sandbox {
    dir: tempfile::TempDir,
    binary: PathBuf,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("scratch directory");
        set_mode(dir.path(), 0o755);
        let binary = dir.path().join("titanic");
        let built = Path::new(env!("CARGO_BIN_EXE_titanic"));
        if std::fs::hard_link(built, &binary).is_err() {
            std::fs::copy(built, &binary).expect("copying the binary");
        }
        set_mode(&binary, 0o755);
        Self { dir, binary }
    }

    /// A sandbox with an empty `data` directory (root's) for a run as uid 65532;
    /// `None` after [`skip_or_fail`] when this process is not root.
    fn for_service_user() -> Option<(Self, PathBuf)> {
        if !is_root() {
            skip_or_fail("running as uid 65532 needs root", ROOT_HOW);
            return None;
        }
        let sandbox = Self::new();
        let data = sandbox.path().join("data");
        std::fs::create_dir(&data).unwrap();
        Some((sandbox, data))
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `titanic serve` with a clean environment, its state in this sandbox; as uid 65532
    /// when `as_service_user` (this process must be root then).
    fn serve(&self, as_service_user: bool, vars: &[(&str, &str)]) -> Output {
        self.serve_command(as_service_user, vars)
            .output()
            .expect("run titanic")
    }

    fn serve_command(&self, as_service_user: bool, vars: &[(&str, &str)]) -> Command {
        let mut cmd = if as_service_user {
            let mut cmd = Command::new("setpriv");
            let id = SERVICE_UID.to_string();
            cmd.args(["--reuid", &id, "--regid", &id, "--clear-groups", "--"]);
            cmd.arg(&self.binary);
            cmd
        } else {
            Command::new(&self.binary)
        };
        clear_env(&mut cmd);
        state_in(&mut cmd, &self.path().join("data"));
        cmd.arg("serve")
            .current_dir(self.path())
            .env("TITANIC_ENV", "production")
            // No configuration files from disk: the compiled-in profile.
            .env("TITANIC_CONFIG_DIR", self.path().join("no-config"))
            .env("TITANIC__SERVER__HOST", "127.0.0.1")
            .env("TITANIC__SERVER__PORT", "0")
            .env("TITANIC__TRAINING__ALPHA_GRID", "")
            .env("TITANIC__LOG__FORMAT", "json")
            .env("TITANIC__LOG__LEVEL", "warn")
            .stdin(Stdio::null());
        for (key, value) in vars {
            cmd.env(key, value);
        }
        cmd
    }
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
}

/// The run failed with exit status 1, and one JSON log line (the service logs to stdout)
/// says why; that line's error, which also went to stderr, contains every one of `needles`.
fn assert_refused(out: &Output, needles: &[&str]) -> String {
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "exit status\nstdout: {stdout}\nstderr: {stderr}"
    );
    let lines: Vec<Value> = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["level"] == "ERROR")
        .collect();
    assert_eq!(lines.len(), 1, "one error line\nstdout: {stdout}");
    let error = lines[0]["error"].as_str().unwrap_or_default().to_owned();
    assert!(!error.contains('\n'), "one line: {error}");
    for needle in needles {
        assert!(
            error.contains(needle),
            "the log line names {needle:?}: {error}"
        );
    }
    assert!(
        stderr.contains(&format!("error: {error}")),
        "the same on stderr: {stderr}"
    );
    println!("refused as expected: {error}");
    error
}

fn service_user() -> String {
    format!("this process: uid {SERVICE_UID}, gid {SERVICE_UID}")
}

#[test]
fn a_data_directory_the_user_may_not_write_is_named_with_the_user_and_the_fix() {
    let Some((sandbox, data)) = Sandbox::for_service_user() else {
        return;
    };
    set_mode(&data, 0o755); // root's, as an image directory or a fresh volume would be
    let out = sandbox.serve(true, &[("TITANIC__AUTH__JWT_SECRET", SECRET)]);
    let shown = data.display().to_string();
    assert_refused(
        &out,
        &[
            &format!("{shown}/titanic.db"),
            &format!("may not create files in its directory {shown} (owner 0:0, mode 0755)"),
            &service_user(),
            &format!("chown -R 65532:65532 {shown}"),
            "securityContext.fsGroup: 65532",
            "TITANIC__DATABASE__URL",
        ],
    );
}

#[test]
fn a_volume_owned_by_another_user_is_named_with_its_owner() {
    let Some((sandbox, data)) = Sandbox::for_service_user() else {
        return;
    };
    chown(&data, 1000, 1000);
    set_mode(&data, 0o700);
    let out = sandbox.serve(true, &[("TITANIC__AUTH__JWT_SECRET", SECRET)]);
    assert_refused(
        &out,
        &[
            &format!("{} (owner 1000:1000, mode 0700)", data.display()),
            &service_user(),
            &format!("chown -R 65532:65532 {}", data.display()),
        ],
    );
}

#[test]
fn a_database_file_the_user_may_not_write_is_named_with_its_owner() {
    let Some((sandbox, data)) = Sandbox::for_service_user() else {
        return;
    };
    chown(&data, SERVICE_UID, SERVICE_UID);
    // Left by a run as root: the file is root's, readable by all, writable by none else.
    let db = data.join("titanic.db");
    std::fs::write(&db, b"").unwrap();
    set_mode(&db, 0o644);
    let out = sandbox.serve(true, &[("TITANIC__AUTH__JWT_SECRET", SECRET)]);
    assert_refused(
        &out,
        &[
            &format!(
                "may not read and write {} (owner 0:0, mode 0644)",
                db.display()
            ),
            &service_user(),
            &format!("chown 65532:65532 {}*", db.display()),
        ],
    );
}

#[test]
fn a_database_directory_that_cannot_be_created_is_named() {
    if !is_root() {
        return skip_or_fail("running as uid 65532 needs root", ROOT_HOW);
    }
    let sandbox = Sandbox::new();
    // A read-only root file system, as far as this user is concerned: `data` cannot be made.
    let out = sandbox.serve(true, &[("TITANIC__AUTH__JWT_SECRET", SECRET)]);
    let data = sandbox.path().join("data");
    let error = assert_refused(
        &out,
        &[
            &format!(
                "its directory {} does not exist and cannot be created",
                data.display()
            ),
            &service_user(),
            &format!("mount a volume this user may write at {}", data.display()),
        ],
    );
    assert!(error.contains("Permission denied"), "{error}");
}

#[test]
fn a_missing_secret_file_is_named_with_the_setting_to_change() {
    let sandbox = Sandbox::new();
    let missing = sandbox.path().join("secrets/jwt-secret");
    let out = sandbox.serve(
        false,
        &[("TITANIC__AUTH__SECRET_FILE", missing.to_str().unwrap())],
    );
    let me = titanic::core::os_user::OsUser::current();
    assert_refused(
        &out,
        &[
            &format!("JWT key file {}", missing.display()),
            "missing",
            &format!("this process: {me}"),
            "mount the Secret that holds it there",
            "TITANIC__AUTH__SECRET_FILE",
        ],
    );
}

#[test]
fn a_secret_file_the_user_may_not_read_is_named_with_its_owner_and_the_fix() {
    if !is_root() {
        return skip_or_fail("running as uid 65532 needs root", ROOT_HOW);
    }
    let sandbox = Sandbox::new();
    let secrets = sandbox.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    set_mode(&secrets, 0o755);
    let file = secrets.join("jwt-secret");
    std::fs::write(&file, SECRET).unwrap();
    // root's and not its group's: a Kubernetes Secret volume without fsGroup, or a Docker bind
    // mount of a file that kept its host owner.
    set_mode(&file, 0o400);
    let data = sandbox.path().join("data");
    std::fs::create_dir(&data).unwrap();
    chown(&data, SERVICE_UID, SERVICE_UID);
    let out = sandbox.serve(
        true,
        &[("TITANIC__AUTH__SECRET_FILE", file.to_str().unwrap())],
    );
    let shown = file.display();
    assert_refused(
        &out,
        &[
            &format!("JWT key file {shown}"),
            "owner 0:0, mode 0400",
            &service_user(),
            &format!("chown 65532:65532 {shown} && chmod 400 {shown}"),
            "securityContext.fsGroup: 65532",
        ],
    );
}

#[test]
fn a_secret_that_cannot_be_generated_names_the_directory_and_the_settings() {
    let Some((sandbox, data)) = Sandbox::for_service_user() else {
        return;
    };
    set_mode(&data, 0o755);
    // The development profile generates a secret in the data directory when none is set.
    let out = sandbox.serve(true, &[("TITANIC_ENV", "development")]);
    assert_refused(
        &out,
        &[
            &format!(
                "cannot create the JWT secret file {}/jwt_secret",
                data.display()
            ),
            &format!("its directory {} is owner 0:0, mode 0755", data.display()),
            &service_user(),
            &format!("chown 65532:65532 {}", data.display()),
            "TITANIC__AUTH__JWT_SECRET",
        ],
    );
}

#[test]
fn a_port_in_use_is_named_with_the_setting_to_change() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let sandbox = Sandbox::new();
    let out = sandbox.serve(
        false,
        &[
            ("TITANIC__AUTH__JWT_SECRET", SECRET),
            ("TITANIC__SERVER__PORT", &port),
        ],
    );
    let me = titanic::core::os_user::OsUser::current();
    assert_refused(
        &out,
        &[
            &format!("cannot listen on 127.0.0.1:{port}"),
            &format!("this process: {me}"),
            "another process listens there",
            "TITANIC__SERVER__PORT",
        ],
    );
    // Refused before the database is opened or a model trained.
    assert!(
        !sandbox.path().join("data/titanic.db").exists(),
        "the database was created before the port was tried"
    );
    drop(taken);
}

#[test]
fn a_database_that_does_not_answer_is_named_with_its_address() {
    // Nothing listens on port 1 of the loopback address: connections are refused.
    let sandbox = Sandbox::new();
    let out = sandbox.serve(
        false,
        &[
            ("TITANIC__AUTH__JWT_SECRET", SECRET),
            (
                "TITANIC__DATABASE__URL",
                "postgres://titanic:hunter2@127.0.0.1:1/titanic",
            ),
        ],
    );
    let me = titanic::core::os_user::OsUser::current();
    let error = assert_refused(
        &out,
        &[
            "cannot open the database postgres://titanic:***@127.0.0.1:1/titanic",
            &format!("this process: {me}"),
            "Connection refused",
            "check that PostgreSQL answers at 127.0.0.1:1",
            "TITANIC__DATABASE__URL",
        ],
    );
    assert!(!error.contains("hunter2"), "{error}");
}

#[test]
fn sigterm_drains_then_exits_zero_without_waiting_out_a_timeout() {
    let sandbox = Sandbox::new();
    let mut child = sandbox
        .serve_command(
            false,
            &[
                ("TITANIC__AUTH__JWT_SECRET", SECRET),
                ("TITANIC__LOG__LEVEL", "info"),
                ("TITANIC__SERVER__SHUTDOWN_DRAIN_SECS", "1"),
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start titanic");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let listening = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|line| line.contains("\"listening\""));
    assert!(listening.is_some(), "the server did not start");
    let signalled = Instant::now();
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::Term,
    )
    .unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    let took = signalled.elapsed();
    assert!(status.success(), "{status:?}\n{}", rest.join("\n"));
    // The drain (1 s) and nothing else: no task waited out its bound.
    assert!(
        took < Duration::from_secs(4),
        "exit {took:?} after SIGTERM\n{}",
        rest.join("\n")
    );
    let warnings: Vec<&String> = rest.iter().filter(|l| l.contains("\"WARN\"")).collect();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(
        rest.iter().any(|l| l.contains("server stopped")),
        "{rest:?}"
    );
}
