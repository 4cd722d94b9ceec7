//! Facts about this build, recorded with every model it trains (`training` in the artifact):
//! set by `build.rs` at compile time.

use std::collections::BTreeMap;

/// The service's own version (`Cargo.toml`).
pub const SERVICE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The commit the binary was built from: `git rev-parse HEAD` in the source tree at build time,
/// or `TITANIC_GIT_COMMIT` when set then (the Dockerfile's build argument of that name, since
/// the image builds without `.git`). `None` otherwise. Uncommitted changes are not detected.
pub const GIT_COMMIT: Option<&str> = option_env!("TITANIC_GIT_COMMIT");

/// The versions of `linfa` and `linfa-logistic` in `Cargo.lock` at build time.
pub const LINFA_VERSION: &str = env!("TITANIC_LINFA_VERSION");
pub const LINFA_LOGISTIC_VERSION: &str = env!("TITANIC_LINFA_LOGISTIC_VERSION");

/// The crates that determine what a trained model is: the service and the fitting library.
pub fn crate_versions() -> BTreeMap<String, String> {
    [
        ("linfa", LINFA_VERSION),
        ("linfa-logistic", LINFA_LOGISTIC_VERSION),
        ("titanic", SERVICE_VERSION),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The versions come from `Cargo.lock`; check them against it independently of `build.rs`.
    #[test]
    fn crate_versions_are_the_locked_ones() {
        let lock =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock")).unwrap();
        for (name, version) in [
            ("linfa", LINFA_VERSION),
            ("linfa-logistic", LINFA_LOGISTIC_VERSION),
        ] {
            let entry = format!("[[package]]\nname = \"{name}\"\nversion = \"{version}\"\n");
            assert!(
                lock.contains(&entry),
                "{name} {version} is not what Cargo.lock holds"
            );
        }
        assert_eq!(crate_versions()["titanic"], SERVICE_VERSION);
        if let Some(commit) = GIT_COMMIT {
            assert!(
                commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit()),
                "{commit}"
            );
        }
    }
}
