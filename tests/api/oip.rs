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
    let server = app.public_json("/v2").await;
    assert_eq!(server["name"], "titanic");
    assert!(server["version"].is_string() && server["extensions"].is_array());
    assert_eq!(
        app.public_json("/v2/health/live").await,
        json!({"live": true})
    );
    assert_eq!(
        app.public_json("/v2/health/ready").await,
        json!({"ready": true})
    );

    let model = app.get_json("/v2/models/titanic", &["predict"]).await;
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
    let ready = app.get_json("/v2/models/titanic/ready", &["predict"]).await;
    assert_eq!(ready, json!({"name": "titanic", "ready": true}));
    let v1 = app
        .get_json("/v2/models/titanic/versions/v1", &["predict"])
        .await;
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
    let single = app.post_json("/predict", &passenger()).await;
    assert_eq!(outputs[0]["data"][0], single["probability"]);
    let woman = json!({"pclass": 1, "sex": "female", "age": 38.0, "sibsp": 1, "parch": 0,
                       "embarked": "C", "name": "Cumings, Mrs. John Bradley",
                       "ticket": "PC 17599"});
    let second: Value = app.post("/predict", &woman).await.json().await.unwrap();
    assert_eq!(outputs[0]["data"][1], second["probability"]);

    // Only the requested outputs; a pinned version; stored passengers by id.
    let mut only = two_passengers();
    only["outputs"] = json!([{"name": "survived"}]);
    let body = app
        .post_json("/v2/models/titanic/versions/v1/infer", &only)
        .await;
    assert_eq!(body["model_version"], "v1");
    assert_eq!(body["outputs"].as_array().unwrap().len(), 1);
    let by_id = json!({"inputs": [{"name": "passenger_id", "shape": [2, 1], "datatype": "INT64", "data": [[1], [892]]}]});
    let body = app.post_json("/v2/models/titanic/infer", &by_id).await;
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

/// A binary-extension request body: the JSON header, then the inputs' bytes.
fn binary_request(header: &Value, data: &[u8]) -> (Vec<u8>, usize) {
    let mut body = serde_json::to_vec(header).unwrap();
    let length = body.len();
    body.extend_from_slice(data);
    (body, length)
}

/// BYTES items as the binary extension writes them: a 4-byte little-endian length each.
fn bytes_items(items: &[&str]) -> Vec<u8> {
    items
        .iter()
        .flat_map(|s| {
            let mut item = u32::try_from(s.len()).unwrap().to_le_bytes().to_vec();
            item.extend_from_slice(s.as_bytes());
            item
        })
        .collect()
}

async fn post_raw(
    app: &TestApp,
    path: &str,
    body: Vec<u8>,
    headers: &[(&str, String)],
) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url(path))
        .bearer_auth(app.token(&["predict"]))
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    request.send().await.unwrap()
}

/// `POST /v2/models/titanic/infer` of a raw body with extra headers.
async fn infer_raw(app: &TestApp, body: Vec<u8>, headers: &[(&str, String)]) -> reqwest::Response {
    post_raw(app, "/v2/models/titanic/infer", body, headers).await
}

/// A binary inference answer: its JSON header, and the binary outputs that follow it.
async fn binary_answer(response: reqwest::Response) -> (Value, Vec<u8>) {
    let json_length: usize = response.headers()["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let bytes = response.bytes().await.unwrap();
    let header = serde_json::from_slice(&bytes[..json_length]).unwrap();
    (header, bytes[json_length..].to_vec())
}

/// Two passengers with the numeric inputs and `sex` as binary data.
fn binary_passengers() -> (Value, Vec<u8>) {
    let sex = bytes_items(&["male", "female"]);
    let pclass: Vec<u8> = [3i64, 1].iter().flat_map(|v| v.to_le_bytes()).collect();
    let age: Vec<u8> = [22.0f32, 38.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let counts: Vec<u8> = [1i32, 1, 0, 0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let header = json!({
        "inputs": [
            {"name": "pclass", "shape": [2], "datatype": "INT64",
             "parameters": {"binary_data_size": pclass.len()}},
            {"name": "sex", "shape": [2], "datatype": "BYTES",
             "parameters": {"binary_data_size": sex.len()}},
            {"name": "age", "shape": [2, 1], "datatype": "FP32",
             "parameters": {"binary_data_size": age.len()}},
            {"name": "sibsp", "shape": [2], "datatype": "INT32",
             "parameters": {"binary_data_size": 8}},
            {"name": "parch", "shape": [2], "datatype": "INT32",
             "parameters": {"binary_data_size": 8}},
        ],
        "outputs": [{"name": "probability", "parameters": {"binary_data": true}},
                    {"name": "survived"}]
    });
    let mut data = pclass;
    data.extend(sex);
    data.extend(age);
    data.extend(counts);
    (header, data)
}

#[tokio::test]
async fn binary_inputs_and_outputs() {
    let app = TestApp::spawn().await;
    let (header, data) = binary_passengers();
    let (body, length) = binary_request(&header, &data);
    let response = infer_raw(
        &app,
        body,
        &[("inference-header-content-length", length.to_string())],
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/octet-stream"
    );
    let (answer, binary) = binary_answer(response).await;
    let outputs = answer["outputs"].as_array().unwrap();
    assert_eq!(outputs[0]["parameters"], json!({"binary_data_size": 16}));
    assert!(outputs[0].get("data").is_none());
    assert_eq!(
        outputs[1]["data"],
        json!([false, true]),
        "JSON unless asked"
    );
    assert_eq!(binary.len(), 16);
    let first = f64::from_le_bytes(binary[..8].try_into().unwrap());

    // The same passengers in JSON (no fare, embarked or name: those inputs were left out).
    let json_body = json!({"inputs": [
        {"name": "pclass", "shape": [2], "datatype": "INT64", "data": [3, 1]},
        {"name": "sex", "shape": [2], "datatype": "BYTES", "data": ["male", "female"]},
        {"name": "age", "shape": [2], "datatype": "FP64", "data": [22.0, 38.0]},
        {"name": "sibsp", "shape": [2], "datatype": "INT64", "data": [1, 1]},
        {"name": "parch", "shape": [2], "datatype": "INT64", "data": [0, 0]}
    ], "parameters": {"binary_data_output": true}});
    let response = app.post("/v2/models/titanic/infer", &json_body).await;
    assert_eq!(response.status(), 200);
    let (answer, binary) = binary_answer(response).await;
    assert_eq!(
        answer["outputs"][1]["parameters"],
        json!({"binary_data_size": 2}),
        "binary_data_output applies to every output"
    );
    assert_eq!(&binary[16..], &[0, 1]);
    assert_eq!(f64::from_le_bytes(binary[..8].try_into().unwrap()), first);
    app.stop().await;
}

#[tokio::test]
async fn hostile_binary_sizes_are_refused_naming_the_input() {
    let app = TestApp::spawn().await;
    let send = |header: Value, data: Vec<u8>, length: Option<String>| {
        let (body, json_length) = binary_request(&header, &data);
        let length = length.unwrap_or_else(|| json_length.to_string());
        let app = &app;
        async move {
            oip_error(infer_raw(app, body, &[("inference-header-content-length", length)]).await)
                .await
        }
    };
    let (header, data) = binary_passengers();

    // A binary_data_size beyond the body.
    let mut beyond = header.clone();
    beyond["inputs"][4]["parameters"]["binary_data_size"] = json!(u64::MAX);
    let (status, message) = send(beyond, data.clone(), None).await;
    assert_eq!(status, 400);
    assert!(
        message.contains("parch") && message.contains("beyond"),
        "{message}"
    );

    // A BYTES length beyond the data.
    let mut data_long = data.clone();
    data_long[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
    let (status, message) = send(header.clone(), data_long, None).await;
    assert_eq!(status, 400);
    assert!(
        message.contains("sex[0]") && message.contains("beyond"),
        "{message}"
    );

    // A header length beyond the body.
    let (status, message) = send(header.clone(), data.clone(), Some("999999".into())).await;
    assert_eq!(status, 400);
    assert!(
        message.contains("Inference-Header-Content-Length"),
        "{message}"
    );
    let (status, _) = send(header.clone(), data.clone(), Some("-1".into())).await;
    assert_eq!(status, 400);

    // A size that does not match the shape's values.
    let mut short = header.clone();
    short["inputs"][0]["parameters"]["binary_data_size"] = json!(12);
    let (status, message) = send(short, data.clone(), None).await;
    assert_eq!(status, 400);
    assert!(message.contains("pclass"), "{message}");

    // More BYTES items than the shape has rows.
    let mut three = header.clone();
    let sex = bytes_items(&["male", "female", "male"]);
    three["inputs"][1]["parameters"]["binary_data_size"] = json!(sex.len());
    let mut data3 = data[..16].to_vec();
    data3.extend(&sex);
    data3.extend(&data[16 + 18..]);
    let (status, message) = send(three, data3, None).await;
    assert_eq!(status, 400);
    assert!(message.contains("sex"), "{message}");

    // Binary data no input claims, and an input with neither data nor a size.
    let mut extra = data.clone();
    extra.extend([0u8; 5]);
    let (status, message) = send(header.clone(), extra, None).await;
    assert_eq!(status, 400);
    assert!(message.contains("5 bytes"), "{message}");
    let mut none = header.clone();
    none["inputs"][0]["parameters"] = json!({});
    let (status, message) = send(none, data.clone(), None).await;
    assert_eq!(status, 400);
    assert!(message.contains("pclass"), "{message}");

    // A shape over the batch limit is refused before any data is read.
    let mut huge = header.clone();
    huge["inputs"][0]["shape"] = json!([i64::MAX]);
    let (status, message) = send(huge, data.clone(), None).await;
    assert_eq!(status, 400);
    assert!(message.contains("pclass"), "{message}");

    // A NaN is no value.
    let mut nan = data.clone();
    nan[34..38].copy_from_slice(&f32::NAN.to_le_bytes());
    let (status, message) = send(header, nan, None).await;
    assert_eq!(status, 400);
    assert!(message.contains("age[0]"), "{message}");
    app.stop().await;
}

fn compress(coding: &str, data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    match coding {
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        _ => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
    }
}

#[tokio::test]
async fn compressed_bodies_and_bombs() {
    let app = TestApp::spawn_with(&[("TITANIC__SERVER__BODY_LIMIT_BYTES", "65536")]).await;
    let plain = serde_json::to_vec(&two_passengers()).unwrap();
    for coding in ["gzip", "deflate"] {
        let response = infer_raw(
            &app,
            compress(coding, &plain),
            &[("content-encoding", coding.to_owned())],
        )
        .await;
        assert_eq!(response.status(), 200, "{coding}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["outputs"][1]["data"], json!([false, true]));
    }
    // Binary data compressed too.
    let (header, data) = binary_passengers();
    let (body, length) = binary_request(&header, &data);
    let response = infer_raw(
        &app,
        compress("gzip", &body),
        &[
            ("content-encoding", "gzip".to_owned()),
            ("inference-header-content-length", length.to_string()),
        ],
    )
    .await;
    assert_eq!(response.status(), 200);

    // A bomb: 10 MB of zeros in a few kB is refused once 64 kB have been decoded.
    let mut bomb_source = b"{\"inputs\": [], \"id\": \"".to_vec();
    bomb_source.extend(std::iter::repeat_n(b'0', 10 << 20));
    for coding in ["gzip", "deflate"] {
        let bomb = compress(coding, &bomb_source);
        assert!(bomb.len() < 65536);
        let response = infer_raw(&app, bomb, &[("content-encoding", coding.to_owned())]).await;
        let (status, message) = oip_error(response).await;
        assert_eq!(status, 413, "{coding}: {message}");
    }

    // Corrupt data and unknown codings.
    let (status, _) = oip_error(
        infer_raw(
            &app,
            b"not gzip at all".to_vec(),
            &[("content-encoding", "gzip".to_owned())],
        )
        .await,
    )
    .await;
    assert_eq!(status, 400);
    let (status, message) =
        oip_error(infer_raw(&app, plain, &[("content-encoding", "br".to_owned())]).await).await;
    assert_eq!(status, 415);
    assert!(message.contains("gzip"), "{message}");
    // A request without a body has nothing to decode, whatever coding it names.
    let empty = post_raw(
        &app,
        "/v2/repository/index",
        Vec::new(),
        &[("content-encoding", "br".to_owned())],
    )
    .await;
    assert_eq!(empty.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn every_v2_error_is_a_string_and_new_routes_answer() {
    let app = TestApp::spawn().await;
    for path in [
        "/v2/nope",
        "/v2/models/titanic/trace/setting",
        "/v2/logging",
    ] {
        let (status, message) = oip_error(app.get_as(path, &["predict"]).await).await;
        assert_eq!(status, 404, "{path}");
        assert!(!message.is_empty());
    }
    // An outer layer's refusal (the body limit by Content-Length) too.
    let (status, _) = oip_error(infer_raw(&app, vec![b' '; 2 << 20], &[]).await).await;
    assert_eq!(status, 413);

    let server = app.public_json("/v2").await;
    assert_eq!(
        server["extensions"],
        json!(["binary_tensor_data", "model_configuration", "statistics"])
    );
    let config = app
        .get_json("/v2/models/titanic/config", &["predict"])
        .await;
    assert_eq!(config["name"], "titanic");
    assert_eq!(config["max_batch_size"], 10000);
    assert_eq!(
        config["input"][1],
        json!({"name": "pclass", "data_type": "TYPE_INT64", "dims": [1], "optional": false})
    );
    assert_eq!(
        config["output"][1],
        json!({"name": "survived", "data_type": "TYPE_BOOL", "dims": [1]})
    );
    let (status, _) = oip_error(
        app.get_as("/v2/models/titanic/versions/v9/config", &["predict"])
            .await,
    )
    .await;
    assert_eq!(status, 404);

    assert_eq!(
        app.post("/v2/models/titanic/infer", &two_passengers())
            .await
            .status(),
        200
    );
    let mut invalid = two_passengers();
    invalid["inputs"][0]["data"] = json!([7, 1]);
    assert_eq!(
        app.post("/v2/models/titanic/infer", &invalid)
            .await
            .status(),
        422
    );
    let stats = app.get_json("/v2/models/titanic/stats", &["predict"]).await;
    let v1 = &stats["model_stats"][0];
    assert_eq!(v1["name"], "titanic");
    assert_eq!(v1["version"], "v1");
    assert_eq!(v1["inference_count"], 2);
    assert_eq!(v1["execution_count"], 1);
    assert_eq!(v1["inference_stats"]["success"]["count"], 1);
    assert_eq!(v1["inference_stats"]["fail"]["count"], 1);
    assert!(v1["inference_stats"]["success"]["ns"].as_u64().unwrap() > 0);
    let all = app.get_json("/v2/models/stats", &["predict"]).await;
    assert_eq!(all, stats);
    let one = app
        .get_json("/v2/models/titanic/versions/v1/stats", &["predict"])
        .await;
    assert_eq!(one, stats);

    let index = app
        .client
        .post(app.url("/v2/repository/index"))
        .bearer_auth(app.token(&["predict"]))
        .send()
        .await
        .unwrap();
    assert_eq!(index.status(), 200);
    assert_eq!(
        index.json::<Value>().await.unwrap(),
        json!([{"name": "titanic", "version": "v1", "state": "READY"}])
    );
    app.stop().await;
}
