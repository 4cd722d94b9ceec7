"""The Open Inference Protocol (KServe V2) routes, called through the official Triton HTTP
client (tritonclient.http) exactly as its users call a Triton server: no request is written by
hand here, except the reference `POST /predict` the V2 answers are compared with.

    python scripts/v2_client_check.py BASE_URL TOKEN

BASE_URL is http://host:port; TOKEN a bearer token with the `predict` scope. Exits non-zero,
naming each failed check, when any fails.
"""

import json
import sys
import urllib.request

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

MODEL = "titanic"
# Two passengers of train.csv, as /predict takes them and as V2 tensors.
PASSENGERS = [
    {"pclass": 3, "sex": "male", "age": 22.0, "sibsp": 1, "parch": 0, "fare": 7.25,
     "embarked": "S", "name": "Braund, Mr. Owen Harris", "ticket": "A/5 21171"},
    {"pclass": 1, "sex": "female", "age": 38.0, "sibsp": 1, "parch": 0, "fare": 71.2833,
     "embarked": "C", "name": "Cumings, Mrs. John Bradley (Florence Briggs Thayer)",
     "ticket": "PC 17599"},
]
TYPES = {"pclass": ("INT64", np.int64), "sibsp": ("INT64", np.int64),
         "parch": ("INT64", np.int64), "age": ("FP64", np.float64),
         "fare": ("FP64", np.float64), "sex": ("BYTES", np.object_),
         "embarked": ("BYTES", np.object_), "name": ("BYTES", np.object_),
         "ticket": ("BYTES", np.object_)}

failures = []


def check(name, condition, detail=""):
    if condition:
        print(f"ok   {name}")
    else:
        print(f"FAIL {name} {detail}")
        failures.append(name)


def inputs(binary):
    out = []
    for field, (datatype, dtype) in TYPES.items():
        values = [p[field] for p in PASSENGERS]
        if dtype is np.object_:
            array = np.array([v.encode() for v in values], dtype=np.object_)
        else:
            array = np.array(values, dtype=dtype)
        tensor = httpclient.InferInput(field, list(array.shape), datatype)
        tensor.set_data_from_numpy(array, binary_data=binary)
        out.append(tensor)
    return out


def outputs(binary):
    return [httpclient.InferRequestedOutput("probability", binary_data=binary),
            httpclient.InferRequestedOutput("survived", binary_data=binary)]


def expect_error(name, call, status, fragment):
    """`call` must raise InferenceServerException (not crash the client) with our message."""
    try:
        call()
    except InferenceServerException as e:
        message = e.message()
        check(name, e.status() == str(status) and fragment in message,
              f"status {e.status()}, message {message!r}")
        return
    except Exception as e:  # a client crash on an answer it cannot read
        check(name, False, f"the client raised {type(e).__name__}: {e}")
        return
    check(name, False, "no error")


def main():
    base, token = sys.argv[1], sys.argv[2]
    url = base.removeprefix("http://")

    def auth():
        # A new dict per call: infer() adds its own headers (Content-Encoding,
        # Inference-Header-Content-Length) to the dict it is given.
        return {"Authorization": f"Bearer {token}"}

    client = httpclient.InferenceServerClient(url=url)

    check("server live", client.is_server_live())
    check("server ready", client.is_server_ready())
    meta = client.get_server_metadata()
    check("server metadata", meta["name"] == MODEL
          and "binary_tensor_data" in meta["extensions"], meta)
    check("model ready", client.is_model_ready(MODEL, headers=auth()))
    model = client.get_model_metadata(MODEL, headers=auth())
    versions = model["versions"]
    check("model metadata", model["name"] == MODEL and versions
          and any(i["name"] == "pclass" for i in model["inputs"]), model)
    version = versions[0]
    check("version ready", client.is_model_ready(MODEL, version, headers=auth()))
    check("version metadata",
          client.get_model_metadata(MODEL, version, headers=auth())["versions"] == [version])
    config = client.get_model_config(MODEL, headers=auth())
    check("model config", config["name"] == MODEL and config["max_batch_size"] > 0
          and {"name": "probability", "data_type": "TYPE_FP64", "dims": [1]}
          in config["output"], config)
    check("version config",
          client.get_model_config(MODEL, version, headers=auth())["name"] == MODEL)
    index = client.get_model_repository_index(headers=auth())
    check("repository index", {"name": MODEL, "version": version, "state": "READY"} in index,
          index)

    # The reference: the same passengers through POST /predict/batch.
    request = urllib.request.Request(
        f"{base}/predict/batch", data=json.dumps({"instances": PASSENGERS}).encode(),
        headers={**auth(), "Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request) as response:
        reference = [p["probability"] for p in json.load(response)["predictions"]]

    # All four combinations of JSON and binary inputs and outputs.
    for binary_in in (False, True):
        for binary_out in (False, True):
            name = f"infer inputs {'binary' if binary_in else 'JSON'}, " \
                   f"outputs {'binary' if binary_out else 'JSON'}"
            result = client.infer(MODEL, inputs(binary_in), outputs=outputs(binary_out),
                                  request_id="r1", headers=auth())
            probability = result.as_numpy("probability")
            survived = result.as_numpy("survived")
            has_binary = "binary_data_size" in (
                result.get_output("probability").get("parameters") or {})
            check(name, np.allclose(probability, reference, rtol=0, atol=1e-12)
                  and list(survived) == [p >= 0.5 for p in reference]
                  and has_binary == binary_out
                  and result.get_response()["id"] == "r1",
                  f"{probability} {survived} against {reference}")

    # The client's default: no outputs named, so all of them, binary (binary_data_output).
    result = client.infer(MODEL, inputs(True), headers=auth())
    check("infer with the client's defaults",
          np.allclose(result.as_numpy("probability"), reference, rtol=0, atol=1e-12))

    for algorithm in ("gzip", "deflate"):
        for binary in (False, True):
            result = client.infer(MODEL, inputs(binary), outputs=outputs(binary),
                                  request_compression_algorithm=algorithm, headers=auth())
            check(f"infer with {algorithm} ({'binary' if binary else 'JSON'})",
                  np.allclose(result.as_numpy("probability"), reference, rtol=0, atol=1e-12))

    result = client.infer(MODEL, inputs(True), model_version=version, headers=auth())
    check("infer by a pinned version", result.get_response()["model_version"] == version)

    stats = client.get_inference_statistics(MODEL, headers=auth())["model_stats"]
    served = [s for s in stats if s["version"] == version]
    check("statistics", served and served[0]["inference_count"] >= 2
          and served[0]["inference_stats"]["success"]["count"] >= 1, stats)
    check("statistics of every model",
          client.get_inference_statistics(headers=auth())["model_stats"] == stats)
    check("statistics of one version",
          [s["version"] for s in client.get_inference_statistics(
              MODEL, version, headers=auth())["model_stats"]] == [version])

    # Each error path raises InferenceServerException with the service's message.
    expect_error("unknown model", lambda: client.infer("nope", inputs(False), headers=auth()),
                 404, "no model")
    expect_error("unknown version",
                 lambda: client.infer(MODEL, inputs(True), model_version="v999", headers=auth()),
                 404, "v999")
    bad = httpclient.InferInput("pclass", [2], "BOOL")
    bad.set_data_from_numpy(np.array([True, False]))
    expect_error("bad datatype", lambda: client.infer(MODEL, [bad], headers=auth()),
                 400, "datatype BOOL")
    expect_error("missing token", lambda: client.infer(MODEL, inputs(False)), 401, "token")
    expect_error("unknown route (config of an unknown model)",
                 lambda: client.get_model_config("nope", headers=auth()), 404, "no model")
    expect_error("a route the server lacks (load_model)",
                 lambda: client.load_model(MODEL, headers=auth()), 404, "no such route")

    if failures:
        print(f"{len(failures)} checks failed: {', '.join(failures)}", file=sys.stderr)
        sys.exit(1)
    print("all V2 client checks passed")


if __name__ == "__main__":
    main()
