//! The real `titanic` binary: train, predict, token, and serve with graceful shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use titanic::core::config::Secret;
use titanic::core::security::JwtKeys;

use support::{
    Api, SECRET, Server, SlowRequest, Steps, delete_keys, repo, run, shared_redis, text, titanic,
};

#[test]
fn token_prints_only_a_verifiable_jwt() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(titanic(dir.path())
        .env("TITANIC__AUTH__JWT_SECRET", SECRET)
        .args([
            "token",
            "--sub",
            "ci",
            "--scopes",
            "predict,models:write",
            "--ttl",
            "120",
        ]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let token = stdout.trim_end_matches('\n');
    assert!(
        !token.contains('\n') && token.split('.').count() == 3,
        "{stdout:?}"
    );
    let keys = JwtKeys::new(&Secret::new(SECRET), 0).unwrap();
    let claims = keys.verify(token).unwrap();
    assert_eq!(claims.sub, "ci");
    assert_eq!(claims.scopes, ["predict", "models:write"]);
    assert_eq!(claims.exp - claims.iat, 120);

    // Without scopes: a read-only token.
    let out = run(titanic(dir.path())
        .env("TITANIC__AUTH__JWT_SECRET", SECRET)
        .args(["token", "--sub", "viewer"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let claims = keys.verify(text(&out.stdout).trim()).unwrap();
    assert_eq!(claims.sub, "viewer");
    assert!(claims.scopes.is_empty());
}

#[test]
fn token_generates_a_private_secret_outside_production() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(titanic(dir.path()).args(["token", "--sub", "dev", "--scopes", "predict"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let secret_file = dir.path().join("jwt_secret");
    assert!(text(&out.stderr).contains(&secret_file.display().to_string()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secret_file)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let secret = std::fs::read_to_string(&secret_file).unwrap();
    let keys = JwtKeys::new(&Secret::new(secret.trim()), 0).unwrap();
    assert!(keys.verify(text(&out.stdout).trim()).is_ok());
    // A second token uses the same secret.
    let again = run(titanic(dir.path()).args(["token", "--sub", "dev", "--scopes", "predict"]));
    assert!(keys.verify(text(&again.stdout).trim()).is_ok());
}

/// `cmd` run by a shell that first sets `umask 000`.
#[cfg(unix)]
fn with_umask_000(cmd: &Command) -> Command {
    let mut sh = Command::new("sh");
    sh.args(["-c", "umask 000 && exec \"$0\" \"$@\""])
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .stdin(Stdio::null());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => sh.env(key, value),
            None => sh.env_remove(key),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        sh.current_dir(dir);
    }
    sh
}

/// With `umask 000` a directory made with the default mode would be 0777, and anyone could
/// replace the secret or the database in it.
#[cfg(unix)]
#[test]
fn state_directories_are_owner_only_under_any_umask() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o7777;
    let state = dir.path().join("state/titanic");
    let mut token = titanic(dir.path());
    token
        .env("TITANIC__DATA__DIR", &state)
        .args(["token", "--sub", "dev", "--scopes", "predict"]);
    let out = run(&mut with_umask_000(&token));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(mode(&dir.path().join("state")), 0o700);
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&state.join("jwt_secret")), 0o600);

    let db = dir.path().join("db/sqlite");
    let mut list = titanic(dir.path());
    list.env(
        "TITANIC__DATABASE__URL",
        format!("sqlite://{}", db.join("titanic.db").display()),
    )
    .args(["models", "list"]);
    let out = run(&mut with_umask_000(&list));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(mode(&dir.path().join("db")), 0o700);
    assert_eq!(mode(&db), 0o700);
}

#[cfg(unix)]
#[test]
fn token_refuses_a_secret_file_others_can_read() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("jwt-secret");
    std::fs::write(&secret, SECRET).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(titanic(dir.path())
        .env("TITANIC__AUTH__SECRET_FILE", &secret)
        .args(["token", "--sub", "x", "--scopes", "predict"]));
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    assert!(
        stderr.contains(&format!("chmod 600 {}", secret.display())),
        "{stderr}"
    );
    // Fixed as the message says, the same file is used.
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = run(titanic(dir.path())
        .env("TITANIC__AUTH__SECRET_FILE", &secret)
        .args(["token", "--sub", "x", "--scopes", "predict"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let keys = JwtKeys::new(&Secret::new(SECRET), 0).unwrap();
    assert!(keys.verify(text(&out.stdout).trim()).is_ok());
}

#[test]
fn token_rejects_unknown_scopes() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(titanic(dir.path())
        .env("TITANIC__AUTH__JWT_SECRET", SECRET)
        .args(["token", "--sub", "x", "--scopes", "predict,root"]));
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(
        text(&out.stderr).contains("\"root\""),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn production_refuses_to_start_without_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(titanic(dir.path())
        .env("TITANIC_ENV", "production")
        .env("TITANIC__SERVER__HOST", "127.0.0.1")
        .env("TITANIC__SERVER__PORT", "0")
        .arg("serve"));
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("TITANIC__AUTH__JWT_SECRET"),
        "{}",
        text(&out.stderr)
    );
    assert!(!dir.path().join("jwt_secret").exists());
}

#[test]
fn train_prints_cross_validated_metrics_and_registers_versions() {
    let mut steps = Steps::new();
    let dir = tempfile::tempdir().unwrap();
    steps.next("train --promote reports cross-validated metrics");
    let out = run(titanic(dir.path()).args([
        "train",
        "--data",
        repo().join("data/titanic/train.csv").to_str().unwrap(),
        "--promote",
    ]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    assert!(
        report.contains("model version v1 (promoted to production)"),
        "{report}"
    );
    assert!(
        report.contains("repeated stratified cross-validation: 2 x 5 folds"),
        "{report}"
    );
    let metric = |name: &str| -> f64 {
        let line = report
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    assert!(metric("accuracy") >= 0.80, "{report}");
    assert!(metric("roc_auc") > 0.85, "{report}");
    assert!(metric("log_loss") < 0.45, "{report}");
    steps.next("training again registers v2 without promoting it");
    // Training again registers v2 without promoting it.
    let out = run(titanic(dir.path()).env("USER", "ann").arg("train"));
    assert!(
        text(&out.stdout).starts_with("model version v2\n"),
        "{}",
        text(&out.stdout)
    );

    steps.next("each version records who trained it, the commit and the crate versions");
    // Each version records who trained it, the commit and the crate versions of the build.
    let db = format!("sqlite://{}", dir.path().join("titanic.db").display());
    let (trained_by, artifact): (Option<String>, String) =
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
            sqlx::query_as("SELECT trained_by, artifact FROM model_versions WHERE version = 'v2'")
                .fetch_one(&pool)
                .await
                .unwrap()
        });
    assert_eq!(trained_by.as_deref(), Some("cli:ann"));
    let training: serde_json::Value =
        serde_json::from_str::<serde_json::Value>(&artifact).unwrap()["training"].clone();
    assert_eq!(training["trained_by"], "cli:ann");
    assert_eq!(
        training["git_commit"],
        serde_json::json!(titanic::core::build::GIT_COMMIT)
    );
    assert_eq!(
        training["crate_versions"]["linfa"],
        titanic::core::build::LINFA_VERSION
    );
    assert_eq!(
        training["crate_versions"]["titanic"],
        env!("CARGO_PKG_VERSION")
    );

    steps.next("promoting the served version changes nothing; rollback goes back to v1");
    // Promoting the version production already serves changes nothing, so a rollback after it
    // still goes back to the version before.
    let promote = || run(titanic(dir.path()).args(["models", "promote", "v2"]));
    assert_eq!(text(&promote().stdout), "production -> v2 (was v1)\n");
    assert_eq!(
        text(&promote().stdout),
        "production already points at v2; nothing changed\n"
    );
    let history = text(&run(titanic(dir.path()).args(["models", "history"])).stdout);
    assert_eq!(history.lines().count(), 2, "{history}");
    let back = run(titanic(dir.path()).args(["models", "rollback"]));
    assert_eq!(text(&back.stdout), "production -> v1 (was v2)\n");
}

#[test]
fn train_names_the_line_of_a_bad_row() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "PassengerId,Survived,Pclass,Name,Sex,Age,SibSp,Parch,Ticket,Fare,Cabin,Embarked\n\
         1,0,3,\"A, Mr. B\",male,22,1,0,T,7.25,,S\n\
         2,1,9,\"C, Mrs. D\",female,38,1,0,T,71.28,C85,C\n",
    )
    .unwrap();
    let out = run(titanic(dir.path()).args(["train", "--data", bad.to_str().unwrap()]));
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("line 3") && stderr.contains("pclass"),
        "{stderr}"
    );
}

#[test]
fn predict_writes_a_kaggle_submission_with_probabilities() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("preds.csv");
    let out = run(titanic(dir.path()).args([
        "predict",
        "--input",
        repo().join("data/titanic/test.csv").to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let written = std::fs::read_to_string(&output).unwrap();
    let mut lines = written.lines();
    assert_eq!(lines.next(), Some("PassengerId,Survived,Probability"));
    let rows: Vec<(u32, u8, f64)> = lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows.len(), 418);
    assert_eq!(rows.first().unwrap().0, 892);
    assert_eq!(rows.last().unwrap().0, 1309);
    for (_, survived, p) in &rows {
        assert!((0.0..=1.0).contains(p));
        assert_eq!(*survived == 1, *p >= 0.5);
    }
    let survivors = rows.iter().filter(|r| r.1 == 1).count();
    assert!(
        (100..250).contains(&survivors),
        "{survivors} of 418 predicted to survive"
    );
    // An explicit version gives the same answers.
    let again = dir.path().join("again.csv");
    let out = run(titanic(dir.path()).args([
        "predict",
        "--input",
        repo().join("data/titanic/test.csv").to_str().unwrap(),
        "--output",
        again.to_str().unwrap(),
        "--model",
        "v1",
    ]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&again).unwrap(), written);
}

#[test]
fn predict_names_the_malformed_line_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    std::fs::write(
        &input,
        "PassengerId,Pclass,Name,Sex,Age,SibSp,Parch,Ticket,Fare,Cabin,Embarked\n\
         892,3,\"Kelly, Mr. James\",male,34.5,0,0,330911,7.8292,,Q\n\
         893,3,\"Wilkes, Mrs. James\",female,forty,1,0,363272,7,,S\n",
    )
    .unwrap();
    let output = dir.path().join("preds.csv");
    let out = run(titanic(dir.path()).args([
        "predict",
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ]));
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("line 3") && stderr.contains("Age"),
        "{stderr}"
    );
    assert!(!output.exists(), "no partial output");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("tmp-"))
        .collect();
    assert!(leftovers.is_empty());

    let missing = run(titanic(dir.path()).args([
        "predict",
        "--input",
        "nope.csv",
        "--output",
        output.to_str().unwrap(),
    ]));
    assert!(!missing.status.success());
    assert!(text(&missing.stderr).contains("nope.csv"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_then_exits_without_failing_in_flight_requests() {
    let mut steps = Steps::new();
    let dir = tempfile::tempdir().unwrap();
    let mut served =
        Server::start(dir.path(), &[("TITANIC__SERVER__SHUTDOWN_DRAIN_SECS", "1")]).await;
    let base = served.base();
    let token =
        JwtKeys::new(&Secret::new(SECRET), 0)
            .unwrap()
            .mint("load", &["predict".to_owned()], 300);
    let client = reqwest::Client::new();
    let ready = client
        .get(format!("{base}/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    let body = serde_json::json!({"pclass": 2, "sex": "female", "age": 30, "sibsp": 0, "parch": 0});
    steps.next("a request in flight across the whole shutdown");
    // A request that is in flight across the whole shutdown: its body arrives at the end.
    let slow = SlowRequest::start(
        &served.addr,
        &token,
        "/predict",
        "application/json",
        body.to_string().as_bytes(),
    );

    steps.next("steady load from 8 clients until readiness says 503");
    // Steady load from 8 clients until "the load balancer" (this test) sees readiness 503.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (client, base, token, body, stop) = (
            client.clone(),
            base.clone(),
            token.clone(),
            body.clone(),
            stop.clone(),
        );
        workers.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match client
                    .post(format!("{base}/predict"))
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => ok += 1,
                    Ok(r) => failed.push(r.status().to_string()),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    served.sigterm();
    let signalled = Instant::now();
    steps.next("during the drain the server answers, readiness says 503");
    // During the drain the server still answers, but readiness says 503.
    loop {
        let r = client
            .get(format!("{base}/health/ready"))
            .send()
            .await
            .unwrap();
        if r.status() == 503 {
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(body["status"], "shutting_down");
            break;
        }
        assert!(
            signalled.elapsed() < Duration::from_millis(900),
            "readiness stayed 200"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for w in workers {
        let (ok, failed) = w.await.unwrap();
        assert!(failed.is_empty(), "failed requests: {failed:?}");
        total += ok;
    }
    assert!(total > 0);

    steps.next("after the drain new connections are refused");
    // After the drain the listener is closed: new connections are refused...
    tokio::time::sleep(Duration::from_millis(1300).saturating_sub(signalled.elapsed())).await;
    assert!(
        std::net::TcpStream::connect(&served.addr).is_err(),
        "listener still open"
    );
    steps.next("the request in flight since before the signal completes");
    // ... but the request in flight since before the signal completes normally.
    let response = tokio::task::spawn_blocking(move || slow.finish())
        .await
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"model_version\":\"v1\""), "{response}");

    let status = served.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_bootstraps_an_empty_store_and_restarts_on_it() {
    let mut steps = Steps::new();
    let dir = tempfile::tempdir().unwrap();
    steps.next("serve bootstraps an empty store and predicts with v1");
    let served = Server::start(dir.path(), &[]).await;
    let api = Api::new(&served, dir.path());
    let (_, r) = api.predict_id(892).await;
    assert_eq!(r["model_version"], "v1");
    drop(served);
    steps.next("a restart reuses the stored model instead of training a new one");
    let served = Server::start(dir.path(), &[]).await;
    let (_, ready) = api.at(&served).ready().await;
    assert_eq!(ready["components"]["model"]["version"], "v1");
    drop(served);

    steps.next("v1 made to look like an older release's model");
    // Make v1 look like the work of an older release's feature pipeline.
    let db = format!("sqlite://{}", dir.path().join("titanic.db").display());
    let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
    sqlx::query(
        "UPDATE model_versions SET artifact = json_set(artifact, '$.format_version', 2, \
         '$.feature_names', json_array('pclass_2', 'log_fare')) WHERE version = 'v1'",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    steps.next("told not to retrain, serve refuses to start and says why");
    // Told not to retrain, serve refuses to start and says why.
    let refused = run(titanic(dir.path())
        .env("TITANIC__AUTH__JWT_SECRET", SECRET)
        .env("TITANIC__TRAINING__RETRAIN_OUTDATED", "false")
        .arg("serve"));
    assert!(!refused.status.success());
    let stderr = text(&refused.stderr);
    assert!(
        stderr.contains("model artifact format 2 is not supported"),
        "{stderr}"
    );

    steps.next("by default serve trains a replacement, promotes it and records why");
    // By default it trains a replacement, promotes it and records why.
    let served = Server::start(dir.path(), &[]).await;
    let (_, ready) = api.at(&served).ready().await;
    assert_eq!(ready["components"]["model"]["version"], "v2");
    drop(served);
    let history = run(titanic(dir.path()).args(["models", "history", "--alias", "production"]));
    let (stdout, stderr) = (text(&history.stdout), text(&history.stderr));
    assert!(
        stdout.contains("replaces v1, built by an older feature pipeline"),
        "{stdout}{stderr}"
    );
}

fn data_hash(report: &str) -> String {
    report
        .split_whitespace()
        .find(|w| w.starts_with("sha256:"))
        .unwrap_or_else(|| panic!("no data hash in {report}"))
        .to_owned()
}

#[test]
fn train_as_of_reads_the_history_point_in_time() {
    let mut steps = Steps::new();
    let dir = tempfile::tempdir().unwrap();
    let first = run(titanic(dir.path()).arg("train"));
    assert!(first.status.success(), "{}", text(&first.stderr));
    let first = text(&first.stdout);
    std::thread::sleep(Duration::from_millis(20));
    let between = titanic::core::time::now_rfc3339();
    std::thread::sleep(Duration::from_millis(20));

    steps.next("later facts: every passenger again, ten years older");
    // Later facts: every passenger in train.csv is recorded again, ten years older.
    let original = std::fs::read_to_string(repo().join("data/titanic/train.csv")).unwrap();
    let mut older = String::new();
    let mut reader = csv::Reader::from_reader(original.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let age = headers.iter().position(|h| h == "Age").unwrap();
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(&headers).unwrap();
    for record in reader.records() {
        let record = record.unwrap();
        let fields: Vec<String> = record
            .iter()
            .enumerate()
            .map(|(i, f)| match (i == age, f.parse::<f64>()) {
                (true, Ok(a)) => format!("{}", (a + 10.0).min(120.0)),
                _ => f.to_owned(),
            })
            .collect();
        writer.write_record(&fields).unwrap();
    }
    older.push_str(std::str::from_utf8(&writer.into_inner().unwrap()).unwrap());
    let later = dir.path().join("later.csv");
    std::fs::write(&later, older).unwrap();
    let second = run(titanic(dir.path()).args(["train", "--data", later.to_str().unwrap()]));
    assert!(second.status.success(), "{}", text(&second.stderr));
    let second = text(&second.stdout);
    assert_ne!(data_hash(&first), data_hash(&second));

    steps.next("as of the time between, training sees the first data");
    // As of the time between the two, training sees exactly the first data again.
    let as_of = run(titanic(dir.path()).args(["train", "--as-of", &between]));
    assert!(as_of.status.success(), "{}", text(&as_of.stderr));
    let as_of = text(&as_of.stdout);
    assert_eq!(data_hash(&as_of), data_hash(&first), "{as_of}");
    assert!(
        as_of.contains(&format!("as of {}", &between[..19])),
        "{as_of}"
    );
    steps.next("as of now, still the first data");
    // And as of now, still the first data: the labels were not recorded again (equal values
    // are not stored twice), so each keeps its event time, and a label is trained with the
    // features of its own time, from before the later ages.
    let now = run(titanic(dir.path()).arg("train"));
    let now = text(&now.stdout);
    assert_eq!(data_hash(&now), data_hash(&first), "{now}");
    let again =
        run(titanic(dir.path()).args(["train", "--as-of", &titanic::core::time::now_rfc3339()]));
    assert_eq!(data_hash(&text(&again.stdout)), data_hash(&now));

    steps.next("--as-of refuses a bad time and a future one");
    let bad = run(titanic(dir.path()).args(["train", "--as-of", "last tuesday"]));
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("--as-of"),
        "{}",
        text(&bad.stderr)
    );
    let future = run(titanic(dir.path()).args(["train", "--as-of", "2999-01-01T00:00:00Z"]));
    assert!(!future.status.success());
    assert!(
        text(&future.stderr).contains("in the future"),
        "{}",
        text(&future.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn materialize_fills_redis_and_is_incremental() {
    let Some(url) = shared_redis().await else {
        return;
    };
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("titanic-cli-test:{}:", std::process::id());
    let materialize = |args: &[&str]| {
        let out = run(titanic(dir.path())
            .env("TITANIC__REDIS__URL", &url)
            .env("TITANIC__REDIS__KEY_PREFIX", &prefix)
            .arg("materialize")
            .args(args));
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let no_model = run(titanic(dir.path())
        .env("TITANIC__REDIS__URL", &url)
        .arg("materialize"));
    assert!(!no_model.status.success());
    assert!(text(&no_model.stderr).contains("titanic train --promote"));
    let trained = run(titanic(dir.path()).args(["train", "--promote"]));
    assert!(trained.status.success(), "{}", text(&trained.stderr));
    let full = materialize(&[]);
    assert!(
        full.starts_with("passenger_demographics@1: Incremental, 1309 entities in 3 chunks"),
        "{full}"
    );
    let again = materialize(&[]);
    assert!(again.contains("0 entities in 0 chunks"), "{again}");
    let forced = materialize(&[
        "--full",
        "--view",
        "passenger_demographics",
        "--version",
        "1",
    ]);
    assert!(forced.contains("Full, 1309 entities"), "{forced}");
    let without_redis = run(titanic(dir.path()).arg("materialize"));
    assert!(!without_redis.status.success());
    assert!(text(&without_redis.stderr).contains("TITANIC__REDIS__URL"));
    let value: Option<String> = redis::cmd("GET")
        .arg(format!("{prefix}fv:passenger_demographics:1:1"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(value.unwrap().contains("Braund"));
    delete_keys(&mut conn, &prefix).await;
}

#[test]
fn historical_streams_an_entity_table_as_of_each_row() {
    let mut steps = Steps::new();
    let dir = tempfile::tempdir().unwrap();
    let out = run(titanic(dir.path()).arg("train"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let entities = dir.path().join("entities.csv");
    std::fs::write(
        &entities,
        "passenger_id,event_timestamp,note\n1,2020-01-01T00:00:00Z,before\n1,2999-01-01T00:00:00Z,after\n",
    )
    .unwrap();
    let output = dir.path().join("features.csv");
    let args = |created_as_of: &str| {
        let mut v = vec![
            "historical".to_owned(),
            "--entities".to_owned(),
            entities.display().to_string(),
            "--output".to_owned(),
            output.display().to_string(),
        ];
        if !created_as_of.is_empty() {
            v.extend(["--created-as-of".to_owned(), created_as_of.to_owned()]);
        }
        v
    };
    let out = run(titanic(dir.path()).args(args("")));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let written = std::fs::read_to_string(&output).unwrap();
    let lines: Vec<&str> = written.lines().collect();
    assert_eq!(
        lines,
        [
            "passenger_id,event_timestamp,note,pclass,sex,age,sibsp,parch,fare,embarked,name,ticket,cabin",
            "1,2020-01-01T00:00:00Z,before,,,,,,,,,,",
            "1,2999-01-01T00:00:00Z,after,3,male,22.0,1,0,7.25,S,\"Braund, Mr. Owen Harris\",A/5 21171,",
        ]
    );
    steps.next("as known before anything was written: no values");
    // As known before anything was written: no values.
    let out = run(titanic(dir.path()).args(args("2000-01-01T00:00:00Z")));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let before = std::fs::read_to_string(&output).unwrap();
    assert!(
        before.lines().nth(2).unwrap().ends_with(",after,,,,,,,,,,"),
        "{before}"
    );
    steps.next("a bad row names its line and leaves no partial file");
    // A bad row names its line and leaves no partial file.
    std::fs::write(&entities, "passenger_id,event_timestamp\n1,soon\n").unwrap();
    let bad = dir.path().join("bad.csv");
    let out = run(titanic(dir.path()).args([
        "historical",
        "--entities",
        entities.to_str().unwrap(),
        "--output",
        bad.to_str().unwrap(),
    ]));
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("line 2: event_timestamp"),
        "{}",
        text(&out.stderr)
    );
    assert!(!bad.exists() && !dir.path().join("bad.partial").exists());
}

#[test]
fn train_reproduce_rebuilds_the_training_set_and_the_coefficients() {
    let mut steps = Steps::new();
    let dir = tempfile::tempdir().unwrap();
    let out = run(titanic(dir.path()).arg("train"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    steps.next("one more labelled passenger in a file, trained as v2");
    // Later facts: a file with one more labelled passenger, trained on as v2. Its rows are
    // written after v1 was trained, so v1's rebuilt set does not see them.
    let file = dir.path().join("more.csv");
    let mut csv = std::fs::read_to_string(repo().join("data/titanic/train.csv")).unwrap();
    csv.push_str("5000,1,1,\"Doe, Mrs. Jane\",female,30,0,0,X1,80,,C\n");
    std::fs::write(&file, &csv).unwrap();
    let out = run(titanic(dir.path()).args(["train", "--data", file.to_str().unwrap()]));
    assert!(out.status.success(), "{}", text(&out.stderr));

    steps.next("v1 and v2 reproduce the same training set");
    for version in ["v1", "v2"] {
        let out = run(titanic(dir.path()).args(["train", "--reproduce", version]));
        let stdout = text(&out.stdout);
        assert!(
            out.status.success(),
            "{version}: {stdout}{}",
            text(&out.stderr)
        );
        assert!(
            stdout.contains("reproduced: the same training set"),
            "{stdout}"
        );
        let rows = if version == "v1" {
            "891 rows"
        } else {
            "892 rows"
        };
        assert!(stdout.contains(rows), "{version}: {stdout}");
    }
    steps.next("v1 came from the feature store, v2 from the file");
    // v1 came from the feature store, v2 from the file (by its hash).
    let v1 = text(&run(titanic(dir.path()).args(["train", "--reproduce", "v1"])).stdout);
    assert!(
        v1.contains("\"kind\":\"feature_store\"") && v1.contains("created_as_of"),
        "{v1}"
    );

    steps.next("the file changed: v2 cannot be reproduced");
    // The file changed: v2 cannot be reproduced, and the error says so.
    std::fs::write(&file, csv.replace("Doe, Mrs. Jane", "Doe, Mrs. Joan")).unwrap();
    let out = run(titanic(dir.path()).args(["train", "--reproduce", "v2"]));
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("has changed since model version v2"),
        "{}",
        text(&out.stderr)
    );
}
