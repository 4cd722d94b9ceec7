"""Evaluates every expression of the Grafana dashboard and of the alerting and recording rules
through a real Prometheus's HTTP API (/api/v1/query), and sends a scripted mix of traffic.

    prometheus_check.py check PROMETHEUS_URL DASHBOARD_JSON PHASE
    prometheus_check.py traffic SERVICE_URL TOKEN

`check` fails (exit 1) when any expression answers an error, an empty result or NaN (before
any traffic, PHASE `before`, the gauges that need data first may: see NOT_YET). An alert
rule's whole expression is a filter (empty while it does not fire), so what must answer is
each operand it compares: the left side of each comparison, and each side of a top-level
`and` (only the left side of `unless`). The rules come from the server itself
(/api/v1/rules), loaded from docs/monitoring/alerts.yml by the scratch configuration, so any
rule whose evaluation fails is reported too. Standard library only.
"""

import json
import math
import re
import sys
import urllib.error
import urllib.parse
import urllib.request

# Grafana's template variables, as a user with every job and instance selected would see them.
VARIABLES = {
    "job": ".*",
    "instance": ".*",
    "route": "/predict",
    "method": "POST",
    # Grafana's $__rate_interval is at least four scrape intervals; the scratch Prometheus
    # scrapes every second and the traffic lies within the last 30 s.
    "__rate_interval": "30s",
}
VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)\}")


def substitute(expr):
    def one(m):
        name = m.group(1) or m.group(2)
        if name.isdigit():  # label_replace's ${1}
            return m.group(0)
        if name not in VARIABLES:
            raise SystemExit(f"unknown template variable ${name} in {expr}")
        return VARIABLES[name]

    return VARIABLE.sub(one, expr)


def get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.load(r)


def query(prometheus, expr):
    """(error, samples): samples as (labels, value) pairs."""
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        body = get(url)
    except urllib.error.HTTPError as e:
        return json.load(e).get("error", str(e)), []
    except OSError as e:
        return str(e), []
    if body.get("status") != "success":
        return body.get("error", "failed"), []
    data = body["data"]
    if data["resultType"] == "scalar":
        return None, [({}, data["result"][1])]
    if data["resultType"] != "vector":
        return f"unexpected result type {data['resultType']}", []
    return None, [(s["metric"], s["value"][1]) for s in data["result"]]


def dashboard_exprs(path):
    out = []

    def walk(node, title):
        if isinstance(node, dict):
            title = node.get("title", title)
            for key, value in node.items():
                if key == "expr" and isinstance(value, str):
                    out.append((f"dashboard: {title}", substitute(value)))
                else:
                    walk(value, title)
        elif isinstance(node, list):
            for item in node:
                walk(item, title)

    with open(path) as f:
        walk(json.load(f), "")
    return out


def top_level(expr):
    """Yields (index, char) of expr outside brackets and string literals."""
    depth, quote, i = 0, None, 0
    while i < len(expr):
        c = expr[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = None
        elif c in "\"'`":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0:
            yield i, c
        i += 1


def strip_parens(expr):
    expr = expr.strip()
    while expr.startswith("(") and expr.endswith(")"):
        inner = expr[1:-1]
        # Only when the outer pair encloses everything.
        depth = 0
        for i, c in enumerate(expr):
            depth += c == "("
            depth -= c == ")"
            if depth == 0 and i < len(expr) - 1:
                return expr
        expr = inner.strip()
    return expr


MATCHING = re.compile(r"^\s*(ignoring|on)\s*\([^)]*\)\s*(group_left|group_right)?\s*(\([^)]*\))?")


def operands(expr):
    """The parts of an alert expression that must answer: see the module's docstring."""
    expr = strip_parens(expr)
    positions = [i for i, _ in top_level(expr)]
    for keyword, both in (("unless", False), ("and", True)):
        for i in positions:
            if expr.startswith(keyword, i) and (i == 0 or expr[i - 1].isspace()) and expr[
                i + len(keyword) : i + len(keyword) + 1
            ].isspace():
                left = expr[:i]
                right = MATCHING.sub("", expr[i + len(keyword) :])
                return operands(left) + (operands(right) if both else [])
    comparison = None
    for i, c in top_level(expr):
        if c in "<>" or (c in "=!" and expr[i + 1 : i + 2] == "="):
            if c == "=" and i > 0 and expr[i - 1] in "<>=!":
                continue
            comparison = i
    if comparison is None:
        return [expr]
    return [strip_parens(expr[:comparison])]


def rule_exprs(prometheus):
    body = get(f"{prometheus}/api/v1/rules")
    out, problems = [], []
    for group in body["data"]["groups"]:
        for rule in group["rules"]:
            name = rule.get("name")
            if rule.get("health") == "err":
                problems.append(f"rule {name}: {rule.get('lastError')}")
            if rule["type"] == "recording":
                out.append((f"recording rule {name}", rule["query"]))
            else:
                error, _ = query(prometheus, rule["query"])
                if error:
                    problems.append(f"alert {name}: {error}\n    {rule['query']}")
                for part in operands(rule["query"]):
                    out.append((f"alert {name}", part))
    if not out:
        problems.append("Prometheus loaded no rules")
    return out, problems


# Gauges that have no value until enough data arrived, by design (docs/monitoring/README.md):
# tolerated empty or NaN before any traffic only. After the scripted traffic (which fills the
# drift window and sends labels of both classes) every expression must answer.
NOT_YET = {
    "titanic_dataset_drift_share": "NaN until monitoring.drift_min_observations passengers",
    "titanic_feature_drift_p_value": "NaN until monitoring.drift_min_observations passengers",
    "titanic_feature_drift_statistic": "NaN until monitoring.drift_min_observations passengers",
    "titanic_feature_psi": "NaN until monitoring.drift_min_observations passengers",
    "titanic_live_performance": "absent until labels arrive through POST /feedback",
    "titanic_estimated_accuracy": "absent until labels arrive through POST /feedback",
    "titanic_live_labelled_predictions": "absent until labels arrive through POST /feedback",
}
METRIC = re.compile(r"\b(titanic_\w+|process_\w+|up)\b")


def not_yet(expr):
    names = set(METRIC.findall(expr))
    return bool(names) and names <= NOT_YET.keys()


def check(prometheus, dashboard, phase):
    before = phase == "before"
    tolerated = 0
    exprs = dashboard_exprs(dashboard)
    rules, problems = rule_exprs(prometheus)
    exprs += rules
    for where, expr in exprs:
        error, samples = query(prometheus, expr)
        one_line = " ".join(expr.split())
        if not error and before and not_yet(expr):
            tolerated += 1
            continue
        if error:
            problems.append(f"{where}: error {error}\n    {one_line}")
        elif not samples:
            problems.append(f"{where}: empty\n    {one_line}")
        else:
            nan = [labels for labels, value in samples if math.isnan(float(value))]
            if nan:
                problems.append(f"{where}: NaN for {nan}\n    {one_line}")
    print(
        f"{phase}: {len(exprs)} expressions, {tolerated} of them only read gauges that need "
        f"more data first, {len(problems)} problems"
    )
    for p in problems:
        print(f"  {p}", file=sys.stderr)
    return 1 if problems else 0


def traffic(base, token):
    """A mix of what an operator sees: predictions (one and a batch), online features through
    both routes, a push through both routes, feedback, a malformed body, a refused token and
    an unknown route."""

    def send(method, path, body=None, auth=True, raw=None):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(base + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if auth:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    passenger = {"pclass": 3, "sex": "male", "age": 22, "sibsp": 1, "parch": 0, "fare": 7.25, "embarked": "S"}
    expected = []
    for _ in range(5):
        expected.append(("predict", send("POST", "/predict", passenger)[0], 200))
    # Stored passengers of test.csv, enough to fill the drift window (drift_min_observations,
    # 30 by default), two of them labelled below, one of each class.
    for passenger_id in range(892, 932):
        expected.append((f"predict {passenger_id}", send("POST", "/predict", {"passenger_id": passenger_id})[0], 200))
    expected.append(("batch", send("POST", "/predict/batch", {"instances": [passenger, {"passenger_id": 3}]})[0], 200))
    expected.append(
        (
            "online",
            send("POST", "/features/online", {"feature_service": "titanic_survival", "entities": {"passenger_id": [1, 2]}})[0],
            200,
        )
    )
    expected.append(
        (
            "get-online-features",
            send("POST", "/get-online-features", {"features": ["passenger_demographics:age"], "entities": {"passenger_id": [1]}})[0],
            200,
        )
    )
    row = {"pclass": 2, "sex": "female", "age": 29, "sibsp": 0, "parch": 1, "fare": 26.0, "embarked": "S"}
    expected.append(
        ("push", send("POST", "/features/push", {"view": "passenger_demographics", "rows": [{"entity": 1310, "values": row}]})[0], 200)
    )
    df = {"passenger_id": [1311], **{k: [v] for k, v in row.items()}}
    expected.append(("feast push", send("POST", "/push", {"push_source_name": "passenger_demographics", "df": df})[0], 200))
    expected.append(("feedback", send("POST", "/feedback", {"passenger_id": 892, "survived": False})[0], 200))
    expected.append(("feedback", send("POST", "/feedback", {"passenger_id": 893, "survived": True})[0], 200))
    expected.append(("malformed", send("POST", "/predict", raw=b"{not json")[0], 400))
    expected.append(("invalid", send("POST", "/predict", {"pclass": 9, "sex": "male"})[0], 422))
    expected.append(("no token", send("POST", "/predict", passenger, auth=False)[0], 401))
    expected.append(("unknown route", send("GET", "/no/such/route")[0], 404))
    wrong = [f"{what}: {got} (expected {want})" for what, got, want in expected if got != want]
    for w in wrong:
        print(f"  traffic {w}", file=sys.stderr)
    print(f"traffic: {len(expected)} requests sent")
    return 1 if wrong else 0


if __name__ == "__main__":
    if sys.argv[1] == "check":
        sys.exit(check(sys.argv[2], sys.argv[3], sys.argv[4]))
    if sys.argv[1] == "traffic":
        sys.exit(traffic(sys.argv[2], sys.argv[3]))
    raise SystemExit(__doc__)
