"""Hostile-input fuzzing of the bodies a schema cannot describe well, against a running server.

    python3 scripts/fuzz_hostile.py BASE_URL TOKEN [CASES] [SEED]

Sends CASES (default 300) seeded random cases to each of:
- POST /v2/models/titanic/infer: tensors with large, negative, empty, many-dimensional and
  inconsistent shapes, data longer or shorter than the shape or nested at random depths, wrong
  and repeated names, datatypes and outputs;
- POST /predict/batch as text/csv: a valid Kaggle CSV mutated (unclosed quotes, long fields
  and header lines, extra and missing columns, NUL and invalid UTF-8 bytes, CR and CRLF line
  ends, a byte-order mark), sent in chunks;
- POST /predict/batch as JSON: instance counts around the item limit.
Every answer must be one of the statuses the API documents for a bad request (or 200), with the
protocol's error body; a 5xx, a dropped connection or an answer slower than 30 s fails the run.
Uses only the standard library. Exits 1 on the first failure, printing the case.
"""

import http.client
import json
import random
import sys
import urllib.parse

CSV_HEADER = "PassengerId,Pclass,Name,Sex,Age,SibSp,Parch,Ticket,Fare,Cabin,Embarked"
CSV_ROWS = [
    '892,3,"Kelly, Mr. James",male,34.5,0,0,330911,7.8292,,Q',
    '893,3,"Wilkes, Mrs. James (Ellen Needs)",female,47,1,0,363272,7,,S',
    '894,2,"Myles, Mr. Thomas Francis",male,62,0,0,240276,9.6875,,Q',
]
INPUTS = [
    ("pclass", "INT64"), ("sex", "BYTES"), ("age", "FP64"), ("sibsp", "INT64"),
    ("parch", "INT64"), ("fare", "FP64"), ("embarked", "BYTES"), ("name", "BYTES"),
    ("ticket", "BYTES"), ("cabin", "BYTES"), ("passenger_id", "INT64"),
]
DATATYPES = ["INT64", "INT32", "FP64", "FP32", "BYTES", "BOOL", "UINT8", "", "int64", "X" * 300]


class Failure(Exception):
    pass


# The body limit of the server under test (the default, server.body_limit_bytes).
BODY_LIMIT = 1_048_576
# The status of a request whose connection was closed while its body was being sent.
CLOSED_EARLY = "closed early"


def request(base, token, method, path, body, content_type, chunks=None):
    url = urllib.parse.urlparse(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type}
    try:
        if chunks is None:
            try:
                conn.request(method, path, body=body, headers=headers)
            except (BrokenPipeError, ConnectionResetError):
                # Refused by its Content-Length and closed before all of it was sent: the
                # answer may be readable, or lost to the reset.
                try:
                    response = conn.getresponse()
                    return response.status, response.read()
                except (OSError, http.client.HTTPException):
                    return CLOSED_EARLY, b""
        else:
            conn.putrequest(method, path)
            for k, v in headers.items():
                conn.putheader(k, v)
            conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            try:
                for chunk in chunks:
                    conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                conn.send(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server answered (and closed) before reading it all
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def value(rng, datatype, depth=0):
    r = rng.random()
    if depth < 3 and r < 0.1:
        return [value(rng, datatype, depth + 1) for _ in range(rng.randint(0, 3))]
    if r < 0.2:
        return None
    if r < 0.3:
        return rng.choice([True, "x" * rng.randint(0, 300), 1e308, -2**63, 2**64, 0.5])
    if datatype == "BYTES":
        return rng.choice(["male", "female", "S", "Q", "C", "Doe, Mr. J", ""])
    return rng.choice([1, 2, 3, 0, 22.0, 7.25, -1, 3.5])


def tensor_case(rng):
    rows = rng.choice([0, 1, 2, 5, 100])
    inputs = []
    for name, datatype in rng.sample(INPUTS, rng.randint(0, len(INPUTS))):
        shape = rng.choice([
            [rows], [rows, 1], [rows], [rows],
            [10**15], [-1], [-rows - 1], [], [rows, 2], [rows, 1, 1], [2**63 - 1],
            [rng.randint(0, 20000)],
        ])
        n = rows + rng.choice([0, 0, 0, 0, 1, -1, 1000])
        data = [value(rng, datatype) for _ in range(max(n, 0))]
        if rng.random() < 0.2:
            data = [[v] for v in data]
        if rng.random() < 0.05:
            data = value(rng, datatype)
        tensor = {"name": name, "datatype": datatype, "shape": shape, "data": data}
        if rng.random() < 0.1:
            tensor["datatype"] = rng.choice(DATATYPES)
        if rng.random() < 0.05:
            tensor["name"] = rng.choice(["unknown", "", "pclass"])
        if rng.random() < 0.05:
            tensor["parameters"] = {"x": [1, {"y": None}]}
        inputs.append(tensor)
    body = {"inputs": inputs}
    if rng.random() < 0.2:
        body["outputs"] = [{"name": rng.choice(["probability", "survived", "x"])}
                           for _ in range(rng.randint(0, 4))]
    if rng.random() < 0.1:
        body["id"] = "case"
    return json.dumps(body).encode()


def csv_case(rng):
    lines = [CSV_HEADER] + [rng.choice(CSV_ROWS) for _ in range(rng.randint(0, 20))]
    text = "\n".join(lines) + "\n"
    data = bytearray(text.encode())
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(9)
        at = rng.randrange(len(data) + 1)
        if kind == 0:
            data[at:at] = b'"'  # an unclosed (or stray) quote
        elif kind == 1:
            data[at:at] = b"A" * rng.choice([1000, 70000, 200000])  # long field
        elif kind == 2:
            data[at:at] = b"," * rng.randint(1, 50)  # extra columns
        elif kind == 3:
            data[at:at] = bytes([0, 0xFF, 0xFE, 0xC3])  # NUL and invalid UTF-8
        elif kind == 4:
            data = data.replace(b"\n", rng.choice([b"\r\n", b"\r"]))
        elif kind == 5:
            data[0:0] = b"\xef\xbb\xbf"  # byte-order mark
        elif kind == 6:
            cut = data.find(b"\n")
            del data[: cut + 1]  # no header line
        elif kind == 7:
            data[at:at] = b"X" * rng.choice([70000, 300000])
            data = data.replace(b"\n", b"", 1)  # header line without its newline
        else:
            data = bytearray(rng.randbytes(rng.randint(0, 5000)))
    size = rng.choice([1, 7, 4096, 65536])
    return [bytes(data[i:i + size]) for i in range(0, len(data), size)] or [b""]


def batch_case(rng):
    n = rng.choice([0, 1, 9999, 10000, 10001, 50000])
    instance = rng.choice([{}, {"passenger_id": 892}, {"pclass": 3, "sex": "male", "sibsp": 0, "parch": 0}])
    return json.dumps({"instances": [instance] * n}).encode()


def check(name, case, status, body, allowed, protocol_error):
    if status not in allowed:
        raise Failure(f"{name}: status {status} ({body[:300]!r}) for {case[:300]!r}")
    if status != 200:
        try:
            parsed = json.loads(body)
        except ValueError:
            raise Failure(f"{name}: {status} without a JSON body: {body[:300]!r}")
        error = parsed.get("error")
        well_formed = isinstance(error, str) if protocol_error else isinstance(error, dict)
        if not well_formed:
            raise Failure(f"{name}: {status} with an error body of the wrong shape: {parsed}")


def main():
    base, token = sys.argv[1], sys.argv[2]
    cases = int(sys.argv[3]) if len(sys.argv) > 3 else 300
    rng = random.Random(int(sys.argv[4]) if len(sys.argv) > 4 else 20261207)
    counts = {}
    try:
        for i in range(cases):
            case = tensor_case(rng)
            status, body = request(base, token, "POST", "/v2/models/titanic/infer", case,
                                   "application/json")
            check("infer", case, status, body, {200, 400, 413, 422}, True)
            counts[("infer", status)] = counts.get(("infer", status), 0) + 1

            chunks = csv_case(rng)
            status, body = request(base, token, "POST", "/predict/batch", None, "text/csv",
                                   chunks=chunks)
            check("csv", b"".join(chunks), status, body, {200, 400, 413, 422}, False)
            if status == 200 and b"panicked" in body:
                raise Failure(f"csv: {body[-300:]!r}")
            counts[("csv", status)] = counts.get(("csv", status), 0) + 1

            if i % 10 == 0:
                case = batch_case(rng)
                status, body = request(base, token, "POST", "/predict/batch", case,
                                       "application/json")
                if status == CLOSED_EARLY and len(case) > BODY_LIMIT:
                    # Refused by its Content-Length; the answer was lost to the reset.
                    status = "413, answer lost to the reset"
                else:
                    check("batch", case, status, body, {200, 413, 422}, False)
                counts[("batch", status)] = counts.get(("batch", status), 0) + 1
    except (Failure, OSError, http.client.HTTPException) as e:
        print(f"hostile fuzzing failed: {e}", file=sys.stderr)
        return 1
    for (route, status), n in sorted(counts.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
        print(f"  {route} {status}: {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
