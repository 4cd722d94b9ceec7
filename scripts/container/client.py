"""HTTP clients for scripts/container-smoke.sh (standard library only).

  client.py probe URL TIMEOUT                      one kubelet-style HTTP probe: exit 0 on 2xx/3xx
  client.py predict URL TOKEN|- HOST               POST /predict; prints "STATUS MODEL_VERSION"
  client.py post URL TOKEN HOST PATH JSON          POST JSON to PATH; prints "STATUS BODY"
  client.py load URL TOKEN HOST STOP_FILE REPORT   light load through the proxy until STOP_FILE
                                                   exists; REPORT gets the outcomes as JSON
  client.py served URL TOKEN HOST VERSION SECONDS  waits until URL serves VERSION; prints seconds
  client.py rate-limit URL HOST                    the per-address limit behind the proxy
"""

import http.client
import json
import os
import sys
import time
import urllib.parse

PASSENGER = {"pclass": 3, "sex": "male", "age": 22, "sibsp": 1, "parch": 0, "fare": 7.25,
             "embarked": "S", "name": "Braund, Mr. Owen Harris", "ticket": "A/5 21171",
             "cabin": None}


def connect(url, source=None, timeout=10):
    u = urllib.parse.urlsplit(url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=timeout,
                                      source_address=(source, 0) if source else None)


def request(url, method, path, host=None, token=None, body=None, headers=None, source=None):
    """One request on a connection of its own (closed after the answer): a proxy reloading its
    configuration closes idle keep-alive connections, and a client that reused one would see
    that, not the service."""
    conn = connect(url, source)
    h = {"Accept": "application/json", "Connection": "close"}
    if host:
        h["Host"] = host
    if token:
        h["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    h.update(headers or {})
    try:
        conn.request(method, path, body=data, headers=h)
        r = conn.getresponse()
        return r.status, r.read(), r
    finally:
        conn.close()


def probe(url, timeout):
    # What the kubelet sends (pkg/probe/http): its User-Agent and Accept: */*.
    u = urllib.parse.urlsplit(url)
    try:
        conn = connect(url, timeout=float(timeout))
        conn.request("GET", u.path, headers={"User-Agent": "kube-probe/1.33", "Accept": "*/*"})
        status = conn.getresponse().status
    except OSError as e:
        print(f"probe {url}: {e}", file=sys.stderr)
        return 1
    return 0 if 200 <= status < 400 else 1


def predict(url, token, host):
    status, body, _ = request(url, "POST", "/predict", host, None if token == "-" else token,
                              PASSENGER)
    version = ""
    if status == 200:
        version = json.loads(body)["model_version"]
    print(status, version)


def post(url, token, host, path, body):
    status, text, _ = request(url, "POST", path, host, token, json.loads(body))
    print(status, text.decode(errors="replace"))


def load(url, token, host, stop_file, report):
    """About 20 requests a second; every outcome counted."""
    outcomes, versions, n = {}, {}, 0
    started = time.monotonic()
    while not os.path.exists(stop_file) and time.monotonic() - started < 600:
        n += 1
        try:
            status, body, _ = request(url, "POST", "/predict", host, token,
                                      {"passenger_id": 1 + n % 1309})
            key = str(status)
            if status == 200:
                v = json.loads(body)["model_version"]
                versions[v] = versions.get(v, 0) + 1
            else:
                key = f"{status} {body[:200].decode(errors='replace')}"
        except (OSError, http.client.HTTPException) as e:
            key = f"error {type(e).__name__}: {e}"
        outcomes[key] = outcomes.get(key, 0) + 1
        time.sleep(0.05)
    with open(report, "w") as f:
        json.dump({"requests": n, "outcomes": outcomes, "versions": versions}, f)


def served(url, token, host, version, seconds):
    start = time.monotonic()
    seen = None
    while time.monotonic() - start < float(seconds):
        status, body, _ = request(url, "POST", "/predict", host, token, PASSENGER)
        if status == 200:
            seen = json.loads(body)["model_version"]
            if seen == version:
                print(f"{time.monotonic() - start:.1f}")
                return 0
        time.sleep(0.1)
    print(f"{url} still serves {seen} after {seconds} s, not {version}", file=sys.stderr)
    return 1


def burst(url, host, source, count, forged=False):
    """`count` requests with a malformed token from `source`; the statuses seen. With `forged`,
    each carries an X-Forwarded-For of its own (a client choosing its own bucket, if the
    header were trusted)."""
    statuses = {}
    for i in range(count):
        headers = {"X-Forwarded-For": f"203.0.113.{i % 250 + 1}"} if forged else {}
        status, _, _ = request(url, "POST", "/predict", host, "not-a-token", PASSENGER, headers,
                               source)
        statuses[status] = statuses.get(status, 0) + 1
    return statuses


def rate_limit(url, host):
    """Tokens that look guessed cost the client's address a cell of its open quota (20/s, burst
    100, per replica), then 429. Behind the proxy every request comes from the proxy's address,
    so the service must take the client's from X-Forwarded-For, and only the proxy's value."""
    first = burst(url, host, "127.0.0.2", 600)
    forged = burst(url, host, "127.0.0.2", 300, forged=True)
    other = burst(url, host, "127.0.0.3", 1)
    print(f"127.0.0.2, 600 guessed tokens: {first}; then 300 more, each with an X-Forwarded-For "
          f"of its own: {forged}; 127.0.0.3, one: {other}")
    ok = (first.get(429, 0) > 0 and forged.get(429, 0) > 0 and other == {401: 1}
          and set(first) <= {401, 429} and set(forged) <= {401, 429})
    return 0 if ok else 1


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "probe":
        sys.exit(probe(*args))
    if cmd == "predict":
        predict(*args)
    elif cmd == "post":
        post(*args)
    elif cmd == "load":
        load(*args)
    elif cmd == "served":
        sys.exit(served(*args))
    elif cmd == "rate-limit":
        sys.exit(rate_limit(*args))
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
