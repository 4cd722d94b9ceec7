//! The monitoring docs (`docs/monitoring/`: Grafana dashboard, Prometheus alerting rules,
//! runbook) name only metrics the service exports: every `titanic_*` and `process_*` name
//! they use is a `# TYPE` family of `GET /metrics` (or a `_bucket`/`_sum`/`_count` series of
//! a histogram family), and every fixed label value they select on (`label="value"`) is one
//! the service produces. The test drives enough traffic (including failures) for every
//! labelled family to have a child; nothing is exempt.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use titanic::ml::registry::{AliasAction, AliasChange, ModelRegistry};

use crate::helpers::{TestApp, free_port, passenger, repo};

const DASHBOARD: &str = "docs/monitoring/grafana-dashboard.json";
const ALERTS: &str = "docs/monitoring/alerts.yml";
const README: &str = "docs/monitoring/README.md";

/// Labels Prometheus attaches to every scraped series (target labels), not the service.
const TARGET_LABELS: &[&str] = &["job", "instance"];

/// The text of a doc to scan: the dashboard's strings (queries unescaped), the others as is.
fn doc_text(path: &str) -> String {
    let text = std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    if !path.ends_with(".json") {
        return text;
    }
    fn strings(v: &Value, out: &mut String) {
        match v {
            Value::String(s) => {
                out.push_str(s);
                out.push('\n');
            }
            Value::Array(items) => items.iter().for_each(|i| strings(i, out)),
            Value::Object(map) => map.values().for_each(|i| strings(i, out)),
            _ => {}
        }
    }
    let parsed: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut out = String::new();
    strings(&parsed, &mut out);
    out
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Every PromQL-style identifier starting with `titanic_` or `process_` (a recorded series
/// such as `job:titanic_x:rate5m` starts with its level, so it is not taken for one).
fn metric_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !is_name_char(c))
        .filter(|t| {
            (t.starts_with("titanic_") || t.starts_with("process_"))
                && t.len() > "process_".len()
                && !t.contains(':')
        })
        .map(str::to_owned)
        .collect()
}

/// Every equality matcher `label="value"` (not `=~`, `!=`, `!~`).
fn label_matchers(text: &str) -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    let bytes = text.as_bytes();
    for (i, _) in text.match_indices("=\"") {
        if i == 0 || matches!(bytes[i - 1], b'!' | b'=' | b'~' | b'<' | b'>') {
            continue;
        }
        let label_start = text[..i]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(0, |p| p + 1);
        let label = &text[label_start..i];
        let rest = &text[i + 2..];
        let Some(end) = rest.find('"') else { continue };
        if label.is_empty() || label.starts_with(|c: char| c.is_ascii_digit()) {
            continue;
        }
        found.insert((label.to_owned(), rest[..end].to_owned()));
    }
    found
}

/// `# TYPE name kind` lines of an exposition: name -> kind.
fn families(exposition: &str) -> BTreeMap<String, String> {
    exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
        })
        .collect()
}

/// The family a referenced name is exported as, if any.
fn exported_as(name: &str, families: &BTreeMap<String, String>) -> Option<String> {
    if families.contains_key(name) {
        return Some(name.to_owned());
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = name.strip_suffix(suffix)?;
        (families.get(base).map(String::as_str) == Some("histogram")).then(|| base.to_owned())
    })
}

/// True when some sample line of the exposition carries `label="value"`.
fn sample_has_label(exposition: &str, label: &str, value: &str) -> bool {
    let first = format!("{{{label}=\"{value}\"");
    let later = format!(",{label}=\"{value}\"");
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('}').map(|(labels, _)| labels))
        .any(|labels| labels.contains(&first) || labels.contains(&later))
}

/// A token of a subject of its own, so the tight rate limit only bites where intended.
fn token(app: &TestApp, scopes: &[&str]) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
    app.keys.mint(&format!("docs-{n}"), &scopes, 300)
}

async fn scrape(app: &TestApp) -> String {
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

/// POSTs with a token of a fresh subject (the rate limit's burst is 1).
async fn post(app: &TestApp, path: &str, body: &Value, scopes: &[&str]) -> reqwest::Response {
    app.post_as(path, body, &token(app, scopes)).await
}

/// A first-class woman: predicted to survive (the helpers' passenger is predicted to die).
fn survivor() -> Value {
    json!({
        "pclass": 1, "sex": "female", "age": 38, "sibsp": 1, "parch": 0, "fare": 71.28,
        "embarked": "C", "name": "Cumings, Mrs. John Bradley (Florence Briggs Thayer)",
        "ticket": "PC 17599", "cabin": "C85"
    })
}

/// A prediction of one passenger; its request id.
async fn predict(app: &TestApp, passenger: &Value) -> String {
    let response = post(app, "/predict", passenger, &["predict"]).await;
    assert_eq!(response.status(), 200);
    response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

async fn feedback(app: &TestApp, request_id: &str, survived: bool) -> reqwest::Response {
    let label = json!({"request_id": request_id, "survived": survived});
    post(app, "/feedback", &label, &["feedback:write"]).await
}

/// Causes every event a family of the docs waits for: predictions, a shadow experiment,
/// feedback (stored, and failing), auth failures, a rate-limited request, dropped log
/// entries, online store reads and failed writes against an unreachable Redis, and a refused
/// model reload.
async fn drive(app: &TestApp) {
    let first = predict(app, &passenger()).await;
    // A batch overflows the one-entry request log queue.
    let instances: Vec<Value> = (0..20).map(|_| passenger()).collect();
    let batch = json!({ "instances": instances });
    let response = post(app, "/predict/batch", &batch, &["predict"]).await;
    assert_eq!(response.status(), 200);
    // By passenger id: read through the (unreachable) online store, served from the offline.
    let by_id = json!({"passenger_id": 1});
    let response = post(app, "/predict", &by_id, &["predict"]).await;
    assert_eq!(response.status(), 200);
    let online = json!({"feature_service": "titanic_survival",
                        "entities": {"passenger_id": [892, 893]}});
    let response = post(app, "/features/online", &online, &[]).await;
    assert_eq!(response.status(), 200);

    // A shadow experiment (v1 against itself is enough to be compared and counted).
    let response = app
        .client
        .put(app.url("/models/experiment"))
        .bearer_auth(token(app, &["models:write"]))
        .json(&json!({"mode": "shadow", "version": "v1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let second = predict(app, &survivor()).await;

    // Labels of both classes (ROC AUC needs both): feedback and live performance.
    assert_eq!(feedback(app, &first, true).await.status(), 200);
    assert_eq!(feedback(app, &second, false).await.status(), 200);

    // Auth failures: no token, and a token without the scope.
    assert_eq!(app.get("/models").await.status(), 401);
    let response = post(app, "/feedback", &json!({}), &["predict"]).await;
    assert_eq!(response.status(), 403);

    // One subject over its burst of 1.
    let flooder = token(app, &["predict"]);
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let response = app.post_as("/predict", &passenger(), &flooder).await;
        statuses.push(response.status().as_u16());
    }
    assert!(statuses.contains(&429), "{statuses:?}");

    // The database refuses a label (feedback outcome "error"), and another process points
    // production at a model that cannot be served (reload refused).
    let pool = app.database().await;
    let third = predict(app, &passenger()).await;
    sqlx::query("ALTER TABLE feedback RENAME TO feedback_elsewhere")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(feedback(app, &third, true).await.status(), 503);
    refuse_a_broken_model(&pool).await;
}

async fn refuse_a_broken_model(pool: &titanic::core::db::Pool) {
    sqlx::query(
        "INSERT INTO model_versions (version, artifact, metrics, data_hash, created_at)
         VALUES ('v9', '{not json', '{}', 'sha256:x', '2026-01-01T00:00:00Z')",
    )
    .execute(pool)
    .await
    .unwrap();
    let change = AliasChange {
        action: AliasAction::Promote,
        actor: "monitoring-docs-test",
        reason: "",
    };
    ModelRegistry::new(pool.clone())
        .set_alias("production", "v9", &change)
        .await
        .unwrap();
}

#[tokio::test]
async fn every_metric_the_monitoring_docs_name_is_exported() {
    let mut names = BTreeSet::new();
    let mut matchers = BTreeSet::new();
    for path in [DASHBOARD, ALERTS, README] {
        let text = doc_text(path);
        let found = metric_names(&text);
        assert!(
            path == README || found.len() >= 10,
            "{path} names too few metrics: {found:?}"
        );
        names.extend(found);
        matchers.extend(label_matchers(&text));
    }

    // Redis at a port nothing listens on: the degraded path (fallbacks, write failures,
    // dependency errors). A burst of 1 per subject; a request log queue of one entry.
    let redis = format!("redis://127.0.0.1:{}/0", free_port());
    let app = TestApp::spawn_with(&[
        ("TITANIC__REDIS__URL", redis.as_str()),
        ("TITANIC__RATE_LIMIT__PER_SECOND", "1"),
        ("TITANIC__RATE_LIMIT__BURST", "1"),
        ("TITANIC__MONITORING__REQUEST_LOG__QUEUE_CAPACITY", "1"),
    ])
    .await;
    drive(&app).await;

    // The refusal is seen by the supervisor within a couple of seconds; the rest is there.
    let deadline = Instant::now() + Duration::from_secs(15);
    let (exposition, missing) = loop {
        let exposition = scrape(&app).await;
        let families = families(&exposition);
        let missing: Vec<&String> = names
            .iter()
            .filter(|n| exported_as(n, &families).is_none())
            .collect();
        let refused = exposition.contains(r#"titanic_model_reloads_total{outcome="refused"}"#);
        if (missing.is_empty() && refused) || Instant::now() > deadline {
            let missing: Vec<String> = missing.into_iter().cloned().collect();
            break (exposition, missing);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let families = families(&exposition);
    println!("metric names checked ({}):", names.len());
    for name in &names {
        let family = exported_as(name, &families);
        println!(
            "  {name}{}",
            family
                .filter(|f| f != name)
                .map(|f| format!(" (histogram {f})"))
                .unwrap_or_default()
        );
    }
    assert!(
        missing.is_empty(),
        "named in docs/monitoring but not exported by /metrics: {missing:?}\n{exposition}"
    );

    let unknown: Vec<String> = matchers
        .iter()
        .filter(|(label, _)| !TARGET_LABELS.contains(&label.as_str()))
        .filter(|(label, value)| !sample_has_label(&exposition, label, value))
        .map(|(label, value)| format!("{label}=\"{value}\""))
        .collect();
    println!("label matchers checked ({}):", matchers.len());
    for (label, value) in &matchers {
        println!("  {label}=\"{value}\"");
    }
    assert!(
        unknown.is_empty(),
        "label values selected in docs/monitoring that no exported series carries: {unknown:?}"
    );
    app.stop().await;
}

#[test]
fn the_dashboard_is_importable_anywhere() {
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join(DASHBOARD)).unwrap()).unwrap();
    assert!(dashboard["schemaVersion"].as_u64().unwrap() >= 36);
    assert!(dashboard["uid"].is_string() && dashboard["title"].is_string());
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    assert!(
        variables
            .iter()
            .any(|v| v["name"] == "DS_PROMETHEUS" && v["type"] == "datasource"),
        "a data source variable"
    );
    // Every data source reference goes through the variable: no instance's uid is baked in.
    fn datasources<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
        match v {
            Value::Object(map) => {
                if let Some(ds) = map.get("datasource") {
                    out.push(ds);
                }
                map.values().for_each(|i| datasources(i, out));
            }
            Value::Array(items) => items.iter().for_each(|i| datasources(i, out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    datasources(&dashboard, &mut found);
    assert!(found.len() > 50);
    for ds in found {
        let grafana_builtin = ds["uid"] == "-- Grafana --";
        assert!(
            grafana_builtin || ds["uid"] == "${DS_PROMETHEUS}",
            "hard-coded data source: {ds}"
        );
    }
    // Panel ids are unique and no two panels overlap.
    let panels = dashboard["panels"].as_array().unwrap();
    let ids: BTreeSet<u64> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), panels.len());
    let cells: Vec<(u64, u64, u64, u64)> = panels
        .iter()
        .map(|p| {
            let g = &p["gridPos"];
            let n = |k: &str| g[k].as_u64().unwrap();
            (n("x"), n("y"), n("w"), n("h"))
        })
        .collect();
    for (i, a) in cells.iter().enumerate() {
        assert!(a.0 + a.2 <= 24, "panel {i} is wider than the grid");
        for b in &cells[i + 1..] {
            let apart =
                a.0 + a.2 <= b.0 || b.0 + b.2 <= a.0 || a.1 + a.3 <= b.1 || b.1 + b.3 <= a.1;
            assert!(apart, "panels overlap: {a:?} {b:?}");
        }
    }
}

#[test]
fn names_and_matchers_are_read_as_promql() {
    let text = r#"rate(titanic_x_bucket{route="/predict", le="0.05", status=~"5..", job!="a"}[5m])
        / process_open_fds and job:titanic_y:ratio_rate5m > 1 `titanic_` TITANIC__REDIS__URL"#;
    assert_eq!(
        metric_names(text).into_iter().collect::<Vec<_>>(),
        ["process_open_fds", "titanic_x_bucket"]
    );
    assert_eq!(
        label_matchers(text).into_iter().collect::<Vec<_>>(),
        [
            ("le".to_owned(), "0.05".to_owned()),
            ("route".to_owned(), "/predict".to_owned())
        ]
    );
    let families: BTreeMap<String, String> = [
        ("titanic_h".to_owned(), "histogram".to_owned()),
        ("titanic_c".to_owned(), "counter".to_owned()),
    ]
    .into();
    assert_eq!(
        exported_as("titanic_h_bucket", &families).as_deref(),
        Some("titanic_h")
    );
    assert_eq!(exported_as("titanic_c_count", &families), None);
    assert!(sample_has_label(
        "# TYPE x counter\nx{a=\"1\",le=\"0.05\"} 3\n",
        "le",
        "0.05"
    ));
}
