//! Re-embeds migrations when they change (`sqlx::migrate!` reads them at compile time), and
//! records facts about the build that every trained model stores: the git commit (when built
//! from a git checkout, or given as `TITANIC_GIT_COMMIT`) and the linfa crate versions from
//! `Cargo.lock`.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=Cargo.lock");
    println!("cargo:rerun-if-env-changed=TITANIC_GIT_COMMIT");

    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    for (name, var) in [
        ("linfa", "TITANIC_LINFA_VERSION"),
        ("linfa-logistic", "TITANIC_LINFA_LOGISTIC_VERSION"),
    ] {
        let version = locked_version(&lock, name).unwrap_or("unknown");
        println!("cargo:rustc-env={var}={version}");
    }

    let given = std::env::var("TITANIC_GIT_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty());
    if let Some(commit) = given.or_else(|| git(&["rev-parse", "HEAD"])) {
        println!("cargo:rustc-env=TITANIC_GIT_COMMIT={}", commit.trim());
    }
    // Build again when HEAD moves: a checkout changes HEAD, a commit the branch's ref.
    if let (Some(git_dir), Some(common)) = (
        git(&["rev-parse", "--git-dir"]),
        git(&["rev-parse", "--git-common-dir"]),
    ) {
        println!(
            "cargo:rerun-if-changed={}",
            Path::new(&git_dir).join("HEAD").display()
        );
        let common = Path::new(&common);
        println!(
            "cargo:rerun-if-changed={}",
            common.join("packed-refs").display()
        );
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={}", common.join(branch).display());
        }
    }
}

/// The version of package `name` in `Cargo.lock` (the first entry of that name).
fn locked_version<'a>(lock: &'a str, name: &str) -> Option<&'a str> {
    let wanted = format!("name = \"{name}\"");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == wanted {
            let version = lines.next()?.trim().strip_prefix("version = \"")?;
            return version.strip_suffix('"');
        }
    }
    None
}

/// A git command's trimmed output, or `None` without git or outside a checkout.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}
