//! The Open Inference Protocol (KServe V2) REST surface, with the protocol's own request and
//! response shapes.

use serde_json::{Value, json};

use crate::helpers::{TestApp, passenger};

/// Two passengers as V2 tensors: shapes `[2]` and `[2, 1]`, flat and nested data, as in the
/// protocol's examples.
fn two_passengers() -> Value {
    json!({
        "id": "42",
        "inputs": [
            {"name": "pclass", "shape": [2], "datatype": "INT64", "data": [3, 1]},
            {"name": "sex", "shape": [2], "datatype": "BYTES", "data": ["male", "female"]},
            {"name": "age", "shape": [2, 1], "datatype": "FP32", "data": [[22.0], [38.0]]},
            {"name": "sibsp", "shape": [2, 1], "datatype": "INT32", "data": [1, 1]},
            {"name": "parch", "shape": [2], "datatype": "INT64", "data": [0, 0]},
            {"name": "fare", "shape": [2], "datatype": "FP64", "data": [7.25, null]},
            {"name": "embarked", "shape": [2], "datatype": "BYTES", "data": ["S", "C"]},
            {"name": "name", "shape": [2], "datatype": "BYTES",
             "data": ["Braund, Mr. Owen Harris", "Cumings, Mrs. John Bradley"]},
            {"name": "ticket", "shape": [2], "datatype": "BYTES", "data": ["A/5 21171", "PC 17599"]}
        ]
    })
}

async fn oip_error(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    let message = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("error must be a string: {body}"))
        .to_owned();
    (status, message)
}

#[tokio::test]
async fn server_and_model_metadata_and_health() {
    let app = TestApp::spawn().await;
    let server: Value = app.get("/v2").await.json().await.unwrap();
    assert_eq!(server["name"], "titanic");
    assert!(server["version"].is_string() && server["extensions"].is_array());
    assert_eq!(
        app.get("/v2/health/live")
            .await
            .json::<Value>()
            .await
            .unwrap(),
        json!({"live": true})
    );
    assert_eq!(
        app.get("/v2/health/ready")
            .await
            .json::<Value>()
            .await
            .unwrap(),
        json!({"ready": true})
    );

    let model: Value = app
        .get_as("/v2/models/titanic", &["predict"])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(model["name"], "titanic");
    assert_eq!(model["versions"], json!(["v1"]));
    let inputs = model["inputs"].as_array().unwrap();
    assert_eq!(inputs.len(), 11);
    assert_eq!(
        inputs[1],
        json!({"name": "pclass", "datatype": "INT64", "shape": [-1]})
    );
    assert_eq!(
        inputs[2],
        json!({"name": "sex", "datatype": "BYTES", "shape": [-1]})
    );
    assert_eq!(
        model["outputs"],
        json!([{"name": "probability", "datatype": "FP64", "shape": [-1]},
               {"name": "survived", "datatype": "BOOL", "shape": [-1]}])
    );
    let ready: Value = app
        .get_as("/v2/models/titanic/ready", &["predict"])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ready, json!({"name": "titanic", "ready": true}));
    let v1: Value = app
        .get_as("/v2/models/titanic/versions/v1", &["predict"])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v1["versions"], json!(["v1"]));
    let (status, message) = oip_error(app.get_as("/v2/models/other", &["predict"]).await).await;
    assert_eq!(status, 404);
    assert!(message.contains("titanic"), "{message}");
    app.stop().await;
}

#[tokio::test]
async fn infer_matches_predict_and_follows_the_protocol() {
    let app = TestApp::spawn().await;
    let response = app
        .post("/v2/models/titanic/infer", &two_passengers())
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["model_name"], "titanic");
    assert_eq!(body["model_version"], "v1");
    assert_eq!(body["id"], "42");
    let outputs = body["outputs"].as_array().unwrap();
    assert_eq!(outputs[0]["name"], "probability");
    assert_eq!(outputs[0]["datatype"], "FP64");
    assert_eq!(outputs[0]["shape"], json!([2]));
    assert_eq!(outputs[1]["name"], "survived");
    assert_eq!(outputs[1]["datatype"], "BOOL");
    assert_eq!(outputs[1]["data"], json!([false, true]));

    // The same answers as /predict for the same passengers.
    let single: Value = app
        .post("/predict", &passenger())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(outputs[0]["data"][0], single["probability"]);
    let woman = json!({"pclass": 1, "sex": "female", "age": 38.0, "sibsp": 1, "parch": 0,
                       "embarked": "C", "name": "Cumings, Mrs. John Bradley",
                       "ticket": "PC 17599"});
    let second: Value = app.post("/predict", &woman).await.json().await.unwrap();
    assert_eq!(outputs[0]["data"][1], second["probability"]);

    // Only the requested outputs; a pinned version; stored passengers by id.
    let mut only = two_passengers();
    only["outputs"] = json!([{"name": "survived"}]);
    let body: Value = app
        .post("/v2/models/titanic/versions/v1/infer", &only)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["model_version"], "v1");
    assert_eq!(body["outputs"].as_array().unwrap().len(), 1);
    let by_id = json!({"inputs": [{"name": "passenger_id", "shape": [2, 1], "datatype": "INT64", "data": [[1], [892]]}]});
    let body: Value = app
        .post("/v2/models/titanic/infer", &by_id)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["outputs"][0]["shape"], json!([2]), "{body}");
    app.stop().await;
}

#[tokio::test]
async fn infer_errors_have_the_protocol_shape() {
    let app = TestApp::spawn().await;
    let mut unknown = two_passengers();
    unknown["inputs"][0]["name"] = json!("class");
    let (status, message) = oip_error(app.post("/v2/models/titanic/infer", &unknown).await).await;
    assert_eq!(status, 400);
    assert!(message.contains("\"class\""), "{message}");

    let mut ragged = two_passengers();
    ragged["inputs"][1]["shape"] = json!([3]);
    let (status, message) = oip_error(app.post("/v2/models/titanic/infer", &ragged).await).await;
    assert_eq!(status, 400);
    assert!(message.contains("sex"), "{message}");

    let mut wrong_type = two_passengers();
    wrong_type["inputs"][1]["datatype"] = json!("FP32");
    assert_eq!(
        oip_error(app.post("/v2/models/titanic/infer", &wrong_type).await)
            .await
            .0,
        400
    );

    let mut invalid = two_passengers();
    invalid["inputs"][0]["data"] = json!([7, 1]);
    let (status, message) = oip_error(app.post("/v2/models/titanic/infer", &invalid).await).await;
    assert_eq!(status, 422);
    assert!(message.contains("row[0].pclass"), "{message}");

    let (status, _) = oip_error(
        app.post("/v2/models/titanic/versions/v999/infer", &two_passengers())
            .await,
    )
    .await;
    assert_eq!(status, 404);

    let wrong_method = app.get_as("/v2/models/titanic/infer", &["predict"]).await;
    let (status, message) = oip_error(wrong_method).await;
    assert_eq!(status, 405);
    assert!(!message.is_empty());

    let unauthenticated = app
        .client
        .post(app.url("/v2/models/titanic/infer"))
        .json(&two_passengers())
        .send()
        .await
        .unwrap();
    assert_eq!(oip_error(unauthenticated).await.0, 401);
    app.stop().await;
}
