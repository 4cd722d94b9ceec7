//! What every test crate shares, included from each crate root with `mod support;` (from
//! `tests/api/main.rs` by path): the real binary with a clean environment, `titanic serve` as
//! a child process and requests against it, a request left half-sent, the test Redis and
//! PostgreSQL (or a visible skip without them), free ports, Prometheus samples.
//!
//! A test that cannot run here says so in the test output: [`skip_or_fail`] writes a
//! `SKIPPED <test>: <why>; <how to run it>` line straight to stdout, past libtest's capture.
//! With `CI` set the same condition fails the test instead.

// Each crate uses a part of this module.
#![allow(dead_code, unused_imports)]

mod server;
mod services;

pub use server::{Api, Server, SlowRequest};
pub use services::{
    OwnRedis, PgDatabase, delete_keys, free_port, redis_answers, shared_redis, unique_prefix,
};

use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The JWT secret of every server and token the tests start or mint.
pub const SECRET: &str = "integration-test-secret-0123456789abcdef";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A scratch directory on the same file system as the build (not /tmp, which may be a tmpfs).
pub fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("scratch directory")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The running test's name (libtest names each test's thread after it).
pub fn test_name() -> String {
    std::thread::current().name().unwrap_or("a test").to_owned()
}

/// A line in the test output itself: written to stdout directly, so libtest's capture of
/// `print!` does not hide it.
pub fn say(line: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// Something the test needs is missing. In CI (`CI` set) that fails the test; elsewhere the
/// output gets `SKIPPED <test>: <reason>; <how>` and the caller returns without testing.
pub fn skip_or_fail(reason: &str, how: &str) {
    unavailable("SKIPPED", reason, how);
}

/// [`skip_or_fail`] with another first word, for a test that goes on without the missing
/// part (the PostgreSQL suite on SQLite).
pub fn unavailable(outcome: &str, reason: &str, how: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{reason}: required in CI; {how}");
    }
    say(&format!("{outcome} {}: {reason}; {how}", test_name()));
}

/// Puts every variable the binary reads out of `cmd`'s environment, so that the developer's
/// own `TITANIC*` or `RUST_LOG` never leak into a test.
pub fn clear_env(cmd: &mut Command) -> &mut Command {
    for (key, _) in std::env::vars() {
        if key.starts_with("TITANIC") || key == "RUST_LOG" {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Keeps the service's state (SQLite file, secrets, artifacts) in `data_dir`, trained on the
/// repository's Titanic CSV files.
pub fn state_in<'a>(cmd: &'a mut Command, data_dir: &Path) -> &'a mut Command {
    cmd.env(
        "TITANIC__DATABASE__URL",
        format!("sqlite://{}", data_dir.join("titanic.db").display()),
    )
    .env("TITANIC__DATA__DIR", data_dir)
    .env(
        "TITANIC__DATA__TRAIN_CSV",
        repo().join("data/titanic/train.csv"),
    )
    .env(
        "TITANIC__DATA__TEST_CSV",
        repo().join("data/titanic/test.csv"),
    )
}

/// The binary with a clean environment keeping its state in `dir`: the test profile, JSON
/// logs, no JWT secret (the CLI makes one of its own outside production).
pub fn titanic(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_titanic"));
    clear_env(&mut cmd);
    cmd.current_dir(dir)
        .env("TITANIC_ENV", "test")
        .env("TITANIC_CONFIG_DIR", repo().join("config"));
    state_in(&mut cmd, dir)
        .env("TITANIC__LOG__FORMAT", "json")
        .env("TITANIC__LOG__LEVEL", "info")
        .stdin(Stdio::null());
    cmd
}

/// [`titanic`] configured as the tests' servers run: the test [`SECRET`], quieter request
/// logs, and rate limits no test reaches (the tests poll health and metrics often, from one
/// address).
pub fn titanic_for_server(dir: &Path) -> Command {
    let mut cmd = titanic(dir);
    cmd.env("TITANIC__AUTH__JWT_SECRET", SECRET)
        .env("TITANIC__LOG__LEVEL", "info,tower_http=warn")
        .env("TITANIC__RATE_LIMIT__PER_SECOND", "1000000")
        .env("TITANIC__RATE_LIMIT__BURST", "1000000")
        .env("TITANIC__RATE_LIMIT__OPEN__PER_SECOND", "1000000")
        .env("TITANIC__RATE_LIMIT__OPEN__BURST", "1000000");
    cmd
}

/// Runs a command to completion.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run titanic")
}

/// Runs a CLI command to completion; panics with its output when it fails.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{:?} failed: {}\n{}",
        cmd,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// A token minted by the binary itself, with the same configuration as [`Server`].
pub fn token(dir: &Path, sub: &str, scopes: &str) -> String {
    run_ok(
        titanic_for_server(dir).args(["token", "--sub", sub, "--scopes", scopes, "--ttl", "900"]),
    )
    .trim()
    .to_owned()
}

/// Braund, the first passenger of train.csv, as a prediction request's inline passenger.
pub fn passenger() -> Value {
    json!({
        "pclass": 3, "sex": "male", "age": 22, "sibsp": 1, "parch": 0, "fare": 7.25,
        "embarked": "S", "name": "Braund, Mr. Owen Harris", "ticket": "A/5 21171", "cabin": null
    })
}

/// The value of one sample (`name{labels} value` or `name value`) in Prometheus text.
pub fn metric(text: &str, sample: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(sample))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Polls `check` every 50 ms until it returns `Ok`, at most `within`; panics with the last
/// `Err` otherwise.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) => {
                assert!(
                    Instant::now() < deadline,
                    "{what}: not within {within:?}; last: {last}"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One named step of a longer scenario: when anything in `body` fails, the test's output
/// says which step it was, after the panic message.
pub async fn step<T>(name: &str, body: impl Future<Output = T>) -> T {
    let _named = NamedStep(name);
    body.await
}

/// [`step`] for a test without a runtime.
pub fn step_sync<T>(name: &str, body: impl FnOnce() -> T) -> T {
    let _named = NamedStep(name);
    body()
}

struct NamedStep<'a>(&'a str);

impl Drop for NamedStep<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("failed in step: {}", self.0);
        }
    }
}

/// The named steps of one long scenario that shares its state from step to step: a failure's
/// output names the step it happened in. `let mut steps = Steps::new();` then
/// `steps.next("what this part checks");` before each part.
pub struct Steps {
    current: String,
}

impl Steps {
    pub fn new() -> Self {
        Self {
            current: "setting up".to_owned(),
        }
    }

    pub fn next(&mut self, name: &str) {
        name.clone_into(&mut self.current);
    }
}

impl Default for Steps {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Steps {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("failed in step: {}", self.current);
        }
    }
}
