//! What the command line prints and mints: the training report, the model registry's
//! listings, alias moves made from a terminal, and tokens. `main` parses the arguments and
//! calls these and the use cases in [`crate::service`].

use anyhow::bail;

use crate::core::config::Settings;
use crate::core::security::{JwtKeys, SecretSource, scopes};
use crate::ml::evaluation::{RepeatMetrics, Summary};
use crate::ml::lifecycle::{self, Stores, Trained};
use crate::ml::registry::{AliasAction, AliasChange, AliasMove};

/// `titanic token`: a signed JWT for `sub` with `scopes` (comma- or space-separated).
pub fn mint_token(
    settings: &Settings,
    sub: &str,
    scope_list: &str,
    ttl_secs: Option<u64>,
) -> anyhow::Result<String> {
    let sub = sub.trim();
    if sub.is_empty() {
        bail!("--sub must not be empty");
    }
    let requested: Vec<String> = scope_list
        .split([',', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if let Some(unknown) = requested
        .iter()
        .find(|s| !scopes::ALL.contains(&s.as_str()))
    {
        bail!(
            "unknown scope {unknown:?}; known scopes: {}",
            scopes::ALL.join(", ")
        );
    }
    let ttl = ttl_secs.unwrap_or(settings.auth.default_token_ttl_secs);
    if ttl == 0 {
        bail!("--ttl must be at least 1 second");
    }
    let (keys, source) = JwtKeys::from_settings(settings)?;
    if let SecretSource::Generated { path } = &source {
        eprintln!("note: no JWT secret configured; generated one in {path}");
    }
    Ok(keys.mint(sub, &requested, ttl))
}

/// The human-readable summary `titanic train` prints.
pub fn training_report(t: &Trained) -> String {
    let m = &t.artifact.metrics;
    let mut s = String::new();
    use std::fmt::Write as _;
    let _ = writeln!(
        s,
        "model version {}{}",
        t.version,
        if t.promoted {
            " (promoted to production)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        s,
        "trained on {} passengers ({} survivors) as of {}, data {}",
        t.artifact.training.rows,
        t.artifact.training.positives,
        t.artifact.training.as_of,
        t.artifact.training.data_hash
    );
    let _ = writeln!(s, "feature service {}", t.artifact.feature_service);
    if t.artifact.training.unlabelled > 0 {
        let _ = writeln!(
            s,
            "unlabelled passengers read for the fare per head: {}",
            t.artifact.training.unlabelled
        );
    }
    if t.skipped > 0 {
        let _ = writeln!(
            s,
            "left out {} labelled passengers without usable features at that time",
            t.skipped
        );
    }
    let last_seed = m.seed.wrapping_add(m.repeats.saturating_sub(1) as u64);
    let _ = writeln!(
        s,
        "repeated stratified cross-validation: {} x {} folds (split seeds {} to {}):",
        m.repeats, m.folds, m.seed, last_seed
    );
    let _ = writeln!(
        s,
        "  metric    mean    95% interval      fold sd  repetition means"
    );
    /// A metric's name, its summary, and its value in one repetition.
    type Row<'a> = (&'a str, &'a Summary, fn(&RepeatMetrics) -> f64);
    let rows: [Row<'_>; 4] = [
        ("accuracy", &m.accuracy, |r| r.accuracy),
        ("roc_auc", &m.roc_auc, |r| r.roc_auc),
        ("log_loss", &m.log_loss, |r| r.log_loss),
        ("brier", &m.brier, |r| r.brier),
    ];
    for (name, summary, of_repeat) in rows {
        let (low, high) = m
            .per_repeat
            .iter()
            .map(of_repeat)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
                (l.min(v), h.max(v))
            });
        let _ = writeln!(
            s,
            "  {name:<8}  {:.4}  [{:.4}, {:.4}]  {:.4}   {:.4} to {:.4}",
            summary.mean, summary.ci_low, summary.ci_high, summary.std, low, high
        );
    }
    let mut alphas = std::collections::BTreeMap::<String, usize>::new();
    for f in &m.per_fold {
        *alphas.entry(format!("{}", f.alpha)).or_default() += 1;
    }
    let alphas: Vec<String> = alphas.iter().map(|(a, n)| format!("{a} ({n})")).collect();
    let _ = writeln!(
        s,
        "L2 alpha chosen in the {} folds (inner cross-validation): {}; final model: {}",
        m.per_fold.len(),
        alphas.join(", "),
        t.artifact.params.alpha
    );
    let _ = writeln!(
        s,
        "calibration of the out-of-fold predictions of every repetition:"
    );
    let _ = writeln!(s, "  predicted     count  mean predicted  observed");
    for bin in m.calibration.iter().filter(|b| b.count > 0) {
        let _ = writeln!(
            s,
            "  {:.1} - {:.1}  {:>7}  {:>14.3}  {:>8.3}",
            bin.lower, bin.upper, bin.count, bin.mean_predicted, bin.observed_rate
        );
    }
    s
}

/// Who the command line acts as, for the alias history and as the trainer of a model:
/// `cli:` and the login name (`USER`, else `LOGNAME`, else `USERNAME`, else `unknown`).
pub fn cli_actor() -> String {
    let user = ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|u| !u.trim().is_empty()))
        .unwrap_or_else(|| "unknown".to_owned());
    format!("cli:{}", user.trim())
}

/// `titanic models list`.
pub async fn models_list(stores: &Stores) -> anyhow::Result<String> {
    use std::fmt::Write as _;
    let mut out = String::new();
    for v in stores.models.list().await? {
        let metric = |name: &str| v.metrics[name]["mean"].as_f64().unwrap_or(f64::NAN);
        let _ = writeln!(
            out,
            "{:<6} {}  accuracy {:.4}  roc_auc {:.4}  {}",
            v.version,
            v.created_at,
            metric("accuracy"),
            metric("roc_auc"),
            if v.aliases.is_empty() {
                String::new()
            } else {
                format!("[{}]", v.aliases.join(", "))
            }
        );
    }
    Ok(out)
}

fn describe_move(m: &AliasMove) -> String {
    if !m.moved {
        return format!(
            "{} already points at {}; nothing changed\n",
            m.alias, m.version
        );
    }
    format!(
        "{} -> {} (was {})\n",
        m.alias,
        m.version,
        m.previous_version.as_deref().unwrap_or("unset")
    )
}

/// `titanic models promote`. A running server picks the change up within seconds.
pub async fn models_promote(
    stores: &Stores,
    alias: &str,
    version: &str,
    reason: &str,
) -> anyhow::Result<String> {
    let actor = cli_actor();
    let change = AliasChange {
        action: AliasAction::Promote,
        actor: &actor,
        reason,
    };
    let (moved, _) = lifecycle::promote(stores, alias, version, &change).await?;
    Ok(describe_move(&moved))
}

/// `titanic models rollback`.
pub async fn models_rollback(stores: &Stores, alias: &str, reason: &str) -> anyhow::Result<String> {
    let (moved, _) = lifecycle::rollback(stores, alias, &cli_actor(), reason).await?;
    Ok(describe_move(&moved))
}

/// `titanic models history`.
pub async fn models_history(stores: &Stores, alias: Option<&str>) -> anyhow::Result<String> {
    use std::fmt::Write as _;
    let mut out = String::new();
    for e in stores.models.history(alias).await? {
        let _ = writeln!(
            out,
            "{}  {:<12} {:<8} {} -> {}  by {}{}",
            e.at,
            e.alias,
            e.action,
            e.previous_version.as_deref().unwrap_or("unset"),
            e.version,
            e.actor,
            if e.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", e.reason)
            }
        );
    }
    Ok(out)
}
