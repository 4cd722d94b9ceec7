//! `GET /monitoring`: the page and its assets over plain HTTP (headers, nothing external),
//! then the page itself in headless Chromium, whose numbers must be the API's.
//!
//! The browser tests need Debian's `chromium` (or `TITANIC_TEST_CHROMIUM=/path/to/chrome`):
//! without it they are skipped with a notice, except in CI (`CI` set), where they fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use titanic::feature_store::ingest;

use crate::helpers::{Steps, TestApp, metric, repo};

/// The policy the page is served with (the handler may add further restrictions).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'";

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

fn assert_strict_headers(response: &reqwest::Response, content_type: &str) {
    assert_eq!(response.status(), 200);
    assert_eq!(header(response, "content-type"), content_type);
    assert!(
        header(response, "content-security-policy").starts_with(CSP),
        "{}",
        header(response, "content-security-policy")
    );
    assert_eq!(header(response, "x-content-type-options"), "nosniff");
    assert_eq!(header(response, "cache-control"), "no-store");
    assert_eq!(header(response, "referrer-policy"), "no-referrer");
}

/// The values of `attr="..."` in `html`, in order.
fn attribute_values<'a>(html: &'a str, attr: &str) -> Vec<&'a str> {
    let needle = format!(" {attr}=\"");
    html.match_indices(&needle)
        .map(|(i, _)| {
            let rest = &html[i + needle.len()..];
            &rest[..rest.find('"').unwrap()]
        })
        .collect()
}

#[tokio::test]
async fn the_page_is_self_contained_html_with_strict_headers() {
    let app = TestApp::spawn().await;
    // No token needed for the page: it holds no data.
    let response = app.get("/monitoring").await;
    assert_strict_headers(&response, "text/html; charset=utf-8");
    let html = response.text().await.unwrap();
    assert!(html.starts_with("<!doctype html>"));

    // Scripts and style sheets come from the service itself (the empty icon, which spares
    // a request for /favicon.ico, is inline data); no inline script.
    let mut assets: Vec<&str> = attribute_values(&html, "src");
    assets.extend(attribute_values(&html, "href"));
    assets.retain(|a| *a != "data:,");
    assert_eq!(
        assets,
        [
            "/monitoring/assets/dashboard.js",
            "/monitoring/assets/dashboard.css"
        ]
    );
    assert_eq!(
        html.matches("<script").count(),
        html.matches("<script src=").count()
    );
    assert!(!html.contains(" style=") && !html.contains("<style"));

    let mut texts = vec![html.clone()];
    for (path, content_type) in [
        (
            "/monitoring/assets/dashboard.js",
            "text/javascript; charset=utf-8",
        ),
        (
            "/monitoring/assets/dashboard.css",
            "text/css; charset=utf-8",
        ),
    ] {
        let response = app.get(path).await;
        assert_strict_headers(&response, content_type);
        texts.push(response.text().await.unwrap());
    }
    for text in &texts {
        assert!(
            !text.contains("http://") && !text.contains("https://"),
            "an external reference"
        );
        assert!(!text.contains("//cdn"), "a CDN");
    }

    let missing = app.get("/monitoring/assets/nope.js").await;
    assert_eq!(missing.status(), 404);
    let wrong_method = app
        .client
        .post(app.url("/monitoring"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), 405);
    // The JSON endpoints beside it still need a token.
    assert_eq!(app.get("/monitoring/drift").await.status(), 401);
    app.stop().await;
}

// ---- headless Chromium ---------------------------------------------------------------

/// `TITANIC_TEST_CHROMIUM`, or `chromium` / `chromium-browser` on the PATH.
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TITANIC_TEST_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// Chromium, or `None` with a notice outside CI; in CI a missing browser fails the test.
fn chromium_or_skip() -> Option<PathBuf> {
    let found = chromium();
    if found.is_none() {
        crate::support::skip_or_fail(
            "no chromium on the PATH",
            "install it (apt-get install chromium) or set TITANIC_TEST_CHROMIUM; \
             .ci/run installs Debian's chromium",
        );
    }
    found
}

/// Loads `url` in headless Chromium, lets the page run for 10 s of virtual time (its
/// fetches complete in real time meanwhile), and returns the DOM it then holds.
async fn dump_dom(browser: &Path, url: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dom.html");
    let err = dir.path().join("stderr.txt");
    let mut child = Command::new(browser)
        .args([
            "--headless",
            // Root in CI containers: Chromium's sandbox needs user namespaces it rarely has.
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-extensions",
            "--no-first-run",
            "--no-default-browser-check",
            "--virtual-time-budget=10000",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("profile").display()
        ))
        .arg("--dump-dom")
        .arg(url)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("start chromium");
    // Polled, not waited for: the server under test runs on this test's runtime.
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium did not finish in 90 s: {}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let dom = std::fs::read_to_string(&out).unwrap();
    assert!(
        status.success() && dom.contains("</html>"),
        "chromium failed ({status}): {}",
        std::fs::read_to_string(&err).unwrap_or_default()
    );
    dom
}

/// Undoes the HTML serializer's escaping of attribute values and text.
fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// An element of the dumped DOM: its opening tag, its text up to the next tag, and what
/// follows it up to `end` (to search its children).
struct Element<'a> {
    tag: &'a str,
    text: String,
    inner: &'a str,
}

impl Element<'_> {
    fn attr(&self, name: &str) -> Option<String> {
        let needle = format!(" {name}=\"");
        let start = self.tag.find(&needle)? + needle.len();
        let len = self.tag[start..].find('"')?;
        Some(unescape(&self.tag[start..start + len]))
    }

    /// The first descendant whose opening tag holds `needle` (e.g. `data-field="psi"`).
    fn find(&self, needle: &str) -> Element<'_> {
        self.find_to(needle, "<")
    }

    /// The same, its `inner` reaching to `end`.
    fn find_to(&self, needle: &str, end: &str) -> Element<'_> {
        element_at(self.inner, needle, end)
            .unwrap_or_else(|| panic!("no {needle} in {}", self.inner))
    }
}

fn element_at<'a>(html: &'a str, needle: &str, end: &str) -> Option<Element<'a>> {
    let at = html.find(needle)?;
    let open = html[..at].rfind('<')?;
    let close = at + html[at..].find('>')?;
    let after = &html[close + 1..];
    let text = unescape(&after[..after.find('<').unwrap_or(after.len())]);
    let inner = &after[..after.find(end).unwrap_or(after.len())];
    Some(Element {
        tag: &html[open..=close],
        text,
        inner,
    })
}

/// The element with `id`; its `inner` reaches to the next `end`.
fn by_id<'a>(dom: &'a str, id: &str, end: &str) -> Element<'a> {
    element_at(dom, &format!(" id=\"{id}\""), end)
        .unwrap_or_else(|| panic!("no element #{id} in the page:\n{dom}"))
}

/// The element shows `expected`: its `data-value` is the API's number exactly (both are
/// shortest round-trip forms) and its text is that number rounded to 4 decimals (or, for
/// tiny values, to 4 significant digits); `None` shows as a dash.
fn assert_shows(what: &str, element: &Element<'_>, expected: Option<f64>) {
    let raw = element.attr("data-value").unwrap_or_default();
    let Some(expected) = expected else {
        assert_eq!(element.text, "—", "{what}");
        assert_eq!(raw, "", "{what}");
        return;
    };
    let value: f64 = raw
        .parse()
        .unwrap_or_else(|_| panic!("{what}: data-value {raw:?}"));
    assert_eq!(value, expected, "{what}: data-value");
    let shown: f64 = element
        .text
        .parse()
        .unwrap_or_else(|_| panic!("{what}: text {:?}", element.text));
    if element.text.contains('e') {
        assert!(expected.abs() < 1e-4, "{what}: {}", element.text);
        assert!(
            (shown - expected).abs() <= expected.abs() * 5e-4,
            "{what}: shows {} for {expected}",
            element.text
        );
    } else {
        let decimals = element.text.split('.').nth(1).map_or(0, str::len);
        assert_eq!(decimals, 4, "{what}: {}", element.text);
        assert!(
            (shown - expected).abs() <= 0.5e-4 + 1e-12,
            "{what}: shows {} for {expected}",
            element.text
        );
    }
}

/// A count shown as a whole number.
fn assert_count(what: &str, element: &Element<'_>, expected: &Value) {
    let expected = expected
        .as_u64()
        .unwrap_or_else(|| panic!("{what}: {expected}"));
    assert_eq!(element.text, expected.to_string(), "{what}");
}

/// Predictions for drift (a batch of 60 training passengers) and a few single ones with
/// their true label sent back, for live performance.
async fn traffic(app: &TestApp) {
    let records = ingest::read_all(
        &repo().join("data/titanic/train.csv"),
        ingest::DEFAULT_MAX_RECORD_BYTES,
    )
    .unwrap();
    let instances: Vec<Value> = records
        .iter()
        .skip(100)
        .take(60)
        .map(|r| serde_json::to_value(r.passenger.to_raw(None)).unwrap())
        .collect();
    let response = app
        .post("/predict/batch", &json!({ "instances": instances }))
        .await;
    assert_eq!(response.status(), 200);
    let feedback_token = app.token(&["feedback:write"]);
    for r in records.iter().take(12) {
        let response = app
            .post(
                "/predict",
                &serde_json::to_value(r.passenger.to_raw(None)).unwrap(),
            )
            .await;
        assert_eq!(response.status(), 200);
        let request_id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let label = json!({ "request_id": request_id, "survived": r.survived.unwrap() });
        let recorded = app.post_as("/feedback", &label, &feedback_token).await;
        assert_eq!(recorded.status(), 200, "{}", recorded.text().await.unwrap());
    }
}

async fn json_of(app: &TestApp, path: &str) -> Value {
    let response = app.get_as(path, &[]).await;
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

#[tokio::test]
async fn the_page_shows_the_numbers_the_api_returns() {
    let mut steps = Steps::new();
    let Some(browser) = chromium_or_skip() else {
        return;
    };
    let app = TestApp::spawn().await;
    traffic(&app).await;
    let models = json_of(&app, "/models").await;
    let drift = json_of(&app, "/monitoring/drift").await;
    let performance = json_of(&app, "/monitoring/performance").await;
    assert_eq!(drift["status"], "ok", "{drift}");

    let started = Instant::now();
    let page = app.url(&format!("/monitoring#token={}", app.token(&[])));
    let bad = app.url("/monitoring#token=not-a-token");
    let none = app.url("/monitoring");
    let (dom, refused, anonymous) = tokio::join!(
        dump_dom(&browser, &page),
        dump_dom(&browser, &bad),
        dump_dom(&browser, &none),
    );
    eprintln!(
        "three headless Chromium runs took {:.1} s",
        started.elapsed().as_secs_f64()
    );

    steps.next("nothing changed the reports while the browser looked at them");
    // Nothing changed the reports while the browser looked at them.
    assert_eq!(
        json_of(&app, "/monitoring/drift").await["features"],
        drift["features"]
    );
    assert_eq!(json_of(&app, "/monitoring/performance").await, performance);

    let status = by_id(&dom, "status", "<");
    assert_eq!(
        status.attr("data-state").as_deref(),
        Some("ok"),
        "{}",
        status.text
    );
    let refreshes: u32 = element_at(&dom, " data-refreshes=", "<")
        .and_then(|body| body.attr("data-refreshes"))
        .map_or(0, |n| n.parse().unwrap());
    assert!(refreshes >= 1);

    steps.next("the served model");
    // The served model.
    let served = models["serving"].as_str().unwrap();
    assert_eq!(served, "v1");
    assert_eq!(by_id(&dom, "served-version", "<").text, served);
    assert_eq!(
        by_id(&dom, "aliases", "</dd>")
            .find("data-alias=\"production\"")
            .attr("data-version")
            .as_deref(),
        Some(served)
    );
    assert_eq!(by_id(&dom, "ready-status", "<").text, "ready");

    steps.next("drift: the dataset verdict and every feature's test and PSI");
    // Drift: the dataset verdict and every feature's test and PSI.
    assert_eq!(by_id(&dom, "drift-status", "<").text, drift["status"]);
    assert_shows(
        "drift_share",
        &by_id(&dom, "drift-share", "<"),
        drift["drift_share"].as_f64(),
    );
    let flag = if drift["dataset_drift"] == true {
        "yes"
    } else {
        "no"
    };
    assert_eq!(by_id(&dom, "dataset-drift", "<").text, flag);
    assert_count(
        "tested_features",
        &by_id(&dom, "tested-features", "<"),
        &drift["tested_features"],
    );
    assert_count(
        "drifted_features",
        &by_id(&dom, "drifted-features", "<"),
        &drift["drifted_features"],
    );
    assert_count(
        "window.observations",
        &by_id(&dom, "window-observations", "<"),
        &drift["window"]["observations"],
    );
    assert_eq!(by_id(&dom, "reference-version", "<").text, served);
    let features = drift["features"].as_array().unwrap();
    assert_eq!(features.len(), 9);
    for f in features {
        let name = f["feature"].as_str().unwrap();
        let row = by_id(&dom, &format!("drift-row-{name}"), "</tr>");
        assert_eq!(
            row.attr("data-drifted"),
            Some(f["drifted"].to_string()),
            "{name}"
        );
        assert_eq!(row.find("data-field=\"test\"").text, f["test"], "{name}");
        for field in ["statistic", "p_value", "psi"] {
            assert_shows(
                &format!("{name}.{field}"),
                &row.find(&format!("data-field=\"{field}\"")),
                f[field].as_f64(),
            );
        }
        assert_count(
            &format!("{name}.observations"),
            &row.find("data-field=\"observations\""),
            &f["observations"],
        );
        // Its chart: one bar per series and bin (and for missing values, when there are).
        let card = by_id(&dom, &format!("drift-card-{name}"), "</article>");
        let bins = f["reference"]["bins"].as_array().unwrap().len();
        let bars = card.inner.matches("<rect").count();
        assert!(
            bars == 2 * bins || bars == 2 * (bins + 1),
            "{name}: {bars} bars for {bins} bins"
        );
        for (i, bin) in f["current"]["bins"].as_array().unwrap().iter().enumerate() {
            let shown = card.find_to(&format!("data-bin-index=\"{i}\""), "</tr>");
            assert_eq!(shown.attr("data-bin").as_deref(), bin["label"].as_str());
            assert_shows(
                &format!("{name} current share"),
                &shown.find("data-field=\"current_share\""),
                bin["share"].as_f64(),
            );
        }
    }

    steps.next("live performance per model version, with its calibration chart");
    // Live performance per model version, with its calibration chart.
    let versions = performance["versions"].as_array().unwrap();
    assert!(!versions.is_empty());
    for v in versions {
        let version = v["model_version"].as_str().unwrap();
        let row = by_id(&dom, &format!("performance-row-{version}"), "</tr>");
        for field in ["labelled", "predictions"] {
            assert_count(
                &format!("{version}.{field}"),
                &row.find(&format!("data-field=\"{field}\"")),
                &v[field],
            );
        }
        for field in [
            "accuracy",
            "log_loss",
            "roc_auc",
            "brier",
            "mean_probability",
            "estimated_accuracy",
        ] {
            assert_shows(
                &format!("{version}.{field}"),
                &row.find(&format!("data-field=\"{field}\"")),
                v[field].as_f64(),
            );
        }
        if v["labelled"].as_u64().unwrap() > 0 {
            let chart = by_id(&dom, &format!("calibration-{version}"), "</article>");
            let filled = v["calibration"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|b| b["count"].as_u64().unwrap() > 0)
                .count();
            assert_eq!(chart.inner.matches("<circle").count(), filled, "{version}");
        }
    }
    let v1 = &versions[0];
    assert_eq!(v1["labelled"], 12);
    assert_eq!(v1["predictions"], 72);

    steps.next("traffic and latency from /metrics");
    // Traffic and latency come from /metrics: present, and consistent with what was sent.
    let text = app.metrics().await;
    assert_eq!(
        metric(
            &text,
            &format!("titanic_model_info{{version=\"{served}\"}}")
        ),
        Some(1.0)
    );
    let total: u64 = by_id(&dom, "requests-total", "<").text.parse().unwrap();
    assert!(total >= 14, "{total}");
    let ok: u64 = by_id(&dom, "status-2xx", "</tr>")
        .find("data-field=\"requests\"")
        .text
        .parse()
        .unwrap();
    assert!(ok >= 14, "{ok}");
    let predict = by_id(&dom, "latency-POST_predict", "</tr>");
    assert_eq!(predict.find("data-field=\"count\"").text, "12");
    for field in ["mean_ms", "p50_ms", "p95_ms", "p99_ms"] {
        let ms: f64 = predict
            .find(&format!("data-field=\"{field}\""))
            .text
            .parse()
            .unwrap_or_else(|e| panic!("{field}: {e}"));
        assert!(ms > 0.0 && ms < 10_000.0, "{field}: {ms}");
    }
    by_id(&dom, "latency-all", "</tr>");
    let rps = by_id(&dom, "requests-per-second", "<").text;
    assert!(rps.parse::<f64>().is_ok(), "requests per second: {rps}");

    steps.next("a refused token and a missing one are said so plainly");
    // A refused token and a missing one are said so plainly; public numbers still show.
    let status = by_id(&refused, "status", "<");
    assert_eq!(status.attr("data-state").as_deref(), Some("unauthorized"));
    assert!(
        status.text.contains("refused") && status.text.contains("401"),
        "{}",
        status.text
    );
    assert_eq!(by_id(&refused, "drift-share", "<").text, "—");
    let status = by_id(&anonymous, "status", "<");
    assert_eq!(status.attr("data-state").as_deref(), Some("no-token"));
    assert!(status.text.contains("#token="), "{}", status.text);
    assert_eq!(by_id(&anonymous, "served-version", "<").text, served);
    assert_eq!(by_id(&anonymous, "drift-share", "<").text, "—");
    app.stop().await;
}
