#!/usr/bin/env python3
"""Checks of the deployment files that need no cluster (called by scripts/check-deploy.sh).

  check.py rules [--write]          kubernetes/base/prometheusrule.yaml == docs/monitoring/alerts.yml
  check.py manifests NAME=FILE...   validate rendered overlays (schemas and invariants)
  check.py hcl DIR                  parse every .tf / .tfvars file under DIR with python-hcl2
  check.py dockerignore             every file the Dockerfile COPYs is in the build context
  check.py checkov-report JSON KIND...  checkov's results: failures, skips and their reasons

Schemas: Kubernetes' own objects are validated, strictly (unknown fields refused), against the
OpenAPI schemas that the kubernetes-validate package ships, for the oldest and the newest
Kubernetes version supported. Custom resources (prometheus-operator, Istio) are not in those
schemas; they are validated against kubernetes/schemas/*.yaml, JSON schemas of the fields of
those CRDs, written from the CRDs' documentation. An object of any other kind fails.
"""

import glob
import json
import os
import sys

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ALERTS = os.path.join(ROOT, "docs", "monitoring", "alerts.yml")
RULE = os.path.join(ROOT, "kubernetes", "base", "prometheusrule.yaml")
CRD_SCHEMAS = os.path.join(ROOT, "kubernetes", "schemas")
# Oldest Kubernetes the manifests are written for, and the newest schema shipped.
K8S_VERSIONS = ("1.29", None)

RULE_HEADER = """\
# GENERATED from docs/monitoring/alerts.yml: do not edit. After changing the alerts, run
#   python3 scripts/deploy/check.py rules --write
# scripts/check-deploy.sh (in .ci/run) fails while the two differ.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: titanic
  labels:
    app.kubernetes.io/name: titanic
    app.kubernetes.io/component: api
spec:
"""


def fail(errors):
    for e in errors:
        print(f"FAIL {e}")
    sys.exit(1 if errors else 0)


# --- PrometheusRule copy ----------------------------------------------------------------------


def rules_text():
    with open(ALERTS) as f:
        text = f.read()
    start = text.index("\ngroups:") + 1
    body = text[start:]
    indented = "".join(("  " + line if line.strip() else line) for line in body.splitlines(True))
    return RULE_HEADER + indented


def cmd_rules(args):
    want = rules_text()
    if "--write" in args:
        with open(RULE, "w") as f:
            f.write(want)
        print(f"wrote {os.path.relpath(RULE, ROOT)}")
        return
    with open(ALERTS) as f:
        source = yaml.safe_load(f)
    with open(RULE) as f:
        text = f.read()
    rule = yaml.safe_load(text)
    errors = []
    if rule.get("spec", {}).get("groups") != source.get("groups"):
        errors.append(
            "kubernetes/base/prometheusrule.yaml differs from docs/monitoring/alerts.yml: "
            "run python3 scripts/deploy/check.py rules --write"
        )
    elif text != want:
        errors.append("kubernetes/base/prometheusrule.yaml is not formatted as generated: run "
                      "python3 scripts/deploy/check.py rules --write")
    if not errors:
        n = sum(len(g.get("rules", [])) for g in source["groups"])
        print(f"ok: PrometheusRule equals docs/monitoring/alerts.yml ({n} rules)")
    fail(errors)


# --- Rendered manifests -----------------------------------------------------------------------


def load_crd_schemas():
    schemas = {}
    for path in sorted(glob.glob(os.path.join(CRD_SCHEMAS, "*.yaml"))):
        with open(path) as f:
            doc = yaml.safe_load(f)
        for api_version in doc["x-api-versions"]:
            schemas[(api_version, doc["x-kind"])] = doc
    return schemas


def validate_schema(obj, crd_schemas):
    """Error messages for one object (empty when it validates)."""
    import jsonschema
    import kubernetes_validate
    from kubernetes_validate.utils import SchemaNotFoundError, ValidationError

    key = (obj.get("apiVersion"), obj.get("kind"))
    name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
    if key in crd_schemas:
        validator = jsonschema.Draft202012Validator(crd_schemas[key])
        return [
            f"{name}: {'.'.join(str(p) for p in e.path)}: {e.message}"
            for e in validator.iter_errors(obj)
        ]
    errors = []
    for version in K8S_VERSIONS:
        version = version or kubernetes_validate.latest_version()
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            errors.append(f"{name} (Kubernetes {version}): {path}: {e.message}")
        except SchemaNotFoundError:
            errors.append(f"{name}: no schema for {key[0]} {key[1]} (Kubernetes {version}, "
                          "nor in kubernetes/schemas)")
    return errors


def find(objs, kind, name):
    for o in objs:
        if o["kind"] == kind and o["metadata"]["name"] == name:
            return o
    return None


def env_of(objs):
    """The TITANIC_* settings of the API's ConfigMap."""
    for o in objs:
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("titanic-config"):
            return o.get("data", {})
    return {}


def pod_specs(objs):
    for o in objs:
        spec = None
        if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            spec = o["spec"]["template"]["spec"]
        elif o["kind"] == "CronJob":
            spec = o["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        if spec is not None:
            yield f"{o['kind']}/{o['metadata']['name']}", spec


def invariants(overlay, objs):
    """What the service's contract and docs/deployment.md promise about every overlay."""
    errors = []

    def check(cond, message):
        if not cond:
            errors.append(f"{overlay}: {message}")

    check(not [o for o in objs if o["kind"] == "Secret"],
          "renders a Secret: secret values are never committed (reference existing Secrets)")
    namespaces = {o["metadata"].get("namespace") for o in objs if o["kind"] != "Namespace"}
    check(len(namespaces) == 1 and None not in namespaces,
          f"every object needs the overlay's namespace, found {namespaces}")

    env = env_of(objs)
    check(env, "no titanic-config ConfigMap")
    api = find(objs, "Deployment", "titanic")
    check(api is not None, "no Deployment titanic")
    if api is None or not env:
        return errors
    pod = api["spec"]["template"]["spec"]
    container = pod["containers"][0]
    drain = int(env.get("TITANIC__SERVER__SHUTDOWN_DRAIN_SECS", 0))
    timeout = int(env.get("TITANIC__SERVER__SHUTDOWN_TIMEOUT_SECS", 30))
    # + up to 10 s for the request log writer (docs/architecture.md, Graceful shutdown).
    check(pod.get("terminationGracePeriodSeconds", 30) > drain + timeout + 10,
          f"terminationGracePeriodSeconds must exceed drain {drain} + timeout {timeout} + 10 s")
    check(container.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/health/live",
          "liveness probe must be GET /health/live")
    check(container.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/health/ready",
          "readiness probe must be GET /health/ready")
    check("startupProbe" in container, "API needs a startup probe (first start trains a model)")

    for name, spec in pod_specs(objs):
        check(spec.get("automountServiceAccountToken") is False,
              f"{name}: automountServiceAccountToken must be false")
        psc = spec.get("securityContext", {})
        check(psc.get("runAsNonRoot") is True, f"{name}: pod runAsNonRoot")
        check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
              f"{name}: pod seccomp RuntimeDefault")
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            sc = c.get("securityContext", {})
            check(sc.get("readOnlyRootFilesystem") is True,
                  f"{name}/{c['name']}: readOnlyRootFilesystem")
            check(sc.get("allowPrivilegeEscalation") is False,
                  f"{name}/{c['name']}: allowPrivilegeEscalation false")
            check(sc.get("capabilities", {}).get("drop") == ["ALL"],
                  f"{name}/{c['name']}: drop ALL capabilities")
            check("limits" in c.get("resources", {}) and "requests" in c.get("resources", {}),
                  f"{name}/{c['name']}: resource requests and limits")

    # The service refuses a secret file other users can read or its group can write; it reads
    # the root-owned files of a Secret volume through its group, fsGroup (docs/security.md,
    # Secret files and the data directory).
    mounted = {m["name"] for m in container.get("volumeMounts", [])}
    for v in pod.get("volumes", []):
        if "secret" not in v or v["name"] not in mounted:
            continue
        modes = [v["secret"].get("defaultMode", 0o644)]
        modes += [i["mode"] for i in v["secret"].get("items", []) if "mode" in i]
        check(all(m & 0o026 == 0 for m in modes),
              f"Secret volume {v['name']}: mode {' '.join(f'{m:04o}' for m in modes)} lets others "
              "read or the group write; the service refuses it (use defaultMode: 0440)")
        check("fsGroup" in pod.get("securityContext", {}),
              f"Secret volume {v['name']}: needs the pod's fsGroup, the group that reads it")

    # The database: SQLite (a file on a volume, one replica) or PostgreSQL (shared, scaled out).
    hpa = find(objs, "HorizontalPodAutoscaler", "titanic")
    backend, source = database_of(env, container)
    check(backend is not None,
          "TITANIC__DATABASE__URL must be a sqlite: URL (components/sqlite) or come from a "
          f"Secret through a secretKeyRef (components/postgres); found {source}")
    if backend == "sqlite":
        # One SQLite file on a ReadWriteOnce volume: one replica, never two at once.
        check(api["spec"].get("strategy", {}).get("type") == "Recreate",
              "SQLite database: the Deployment must use strategy Recreate")
        check(api["spec"].get("replicas", 1) == 1, "SQLite database: one replica")
        check(hpa is None or hpa["spec"]["maxReplicas"] == 1,
              "SQLite database: HPA maxReplicas must be 1 (SQLite has one writing host)")
    elif backend == "postgres":
        errors += [f"{overlay}: PostgreSQL database: {e}" for e in postgres_invariants(objs, api, hpa)]
    return errors


def env_var(container, name):
    """The container's `env` entry called `name`, or None."""
    return next((e for e in container.get("env", []) if e.get("name") == name), None)


def database_of(env, container):
    """("sqlite" | "postgres" | None, where the URL comes from). A container `env` entry wins
    over the ConfigMap (envFrom), as in Kubernetes. A PostgreSQL URL carries a password, so it
    counts only when it comes from a secretKeyRef."""
    entry = env_var(container, "TITANIC__DATABASE__URL")
    if entry is not None:
        if "value" in entry:
            url = entry["value"]
            if url.startswith("sqlite:"):
                return "sqlite", "a literal sqlite URL"
            return None, "a literal value in the Deployment (the URL must come from a Secret)"
        if "secretKeyRef" in entry.get("valueFrom", {}):
            return "postgres", "a secretKeyRef"
        return None, f"valueFrom {sorted(entry.get('valueFrom', {}))} (use a secretKeyRef)"
    url = env.get("TITANIC__DATABASE__URL", "")
    if url.startswith("sqlite:"):
        return "sqlite", "the ConfigMap"
    if url:
        return None, "a non-SQLite URL in the ConfigMap (a PostgreSQL URL must come from a Secret)"
    return None, ("nothing (the image's sqlite:///var/lib/titanic/titanic.db would be on the "
                  "read-only root filesystem)")


def selects(selector, labels):
    """Whether a label selector (matchLabels, matchExpressions In/NotIn/Exists) selects labels."""
    for k, v in selector.get("matchLabels", {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions", []):
        key, op, values = e["key"], e["operator"], e.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def egress_allows(objs, pod_labels, port):
    """Whether some NetworkPolicy selecting these pods allows TCP egress to `port` towards a
    named destination (a rule with `to`: egress to anywhere is not restrictive)."""
    for o in objs:
        if o["kind"] != "NetworkPolicy" or not selects(o["spec"].get("podSelector", {}), pod_labels):
            continue
        for rule in o["spec"].get("egress", []):
            ports = rule.get("ports", [])
            if rule.get("to") and any(p.get("port") == port and p.get("protocol", "TCP") == "TCP"
                                      for p in ports):
                return True
    return False


def postgres_invariants(objs, api, hpa):
    """What several replicas on one PostgreSQL database rely on."""
    errors = []
    pod = api["spec"]["template"]["spec"]
    ref = env_var(pod["containers"][0], "TITANIC__DATABASE__URL")["valueFrom"]["secretKeyRef"]
    pvcs = [o["metadata"]["name"] for o in objs if o["kind"] == "PersistentVolumeClaim"]
    if pvcs:
        errors.append(f"no PersistentVolumeClaim for the database, found {pvcs}")
    for name, spec in pod_specs(objs):
        if any("persistentVolumeClaim" in v for v in spec.get("volumes", [])):
            errors.append(f"{name} mounts a PersistentVolumeClaim")
    strategy = api["spec"].get("strategy", {})
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        errors.append(f"the Deployment must use RollingUpdate, found {strategy.get('type')}")
    elif strategy.get("rollingUpdate", {}).get("maxUnavailable", 1) not in (0, "0", "0%"):
        errors.append("RollingUpdate must keep every replica (maxUnavailable 0)")
    if "replicas" in api["spec"]:
        errors.append("the Deployment must not set replicas (the HPA owns the count)")
    if hpa is None:
        errors.append("needs the HorizontalPodAutoscaler titanic")
    else:
        lo, hi = hpa["spec"].get("minReplicas", 1), hpa["spec"]["maxReplicas"]
        if lo < 2:
            errors.append(f"HPA minReplicas must be at least 2, found {lo}")
        if hi < lo:
            errors.append(f"HPA maxReplicas {hi} below minReplicas {lo}")
    pdb = find(objs, "PodDisruptionBudget", "titanic")
    if pdb is None or pdb["spec"].get("maxUnavailable") != 1:
        errors.append("needs the PodDisruptionBudget titanic with maxUnavailable 1")
    cron = find(objs, "CronJob", "titanic-train")
    if cron is not None:
        job = cron["spec"]["jobTemplate"]["spec"]["template"]
        entry = env_var(job["spec"]["containers"][0], "TITANIC__DATABASE__URL")
        if entry is None or entry.get("valueFrom", {}).get("secretKeyRef") != ref:
            errors.append(f"CronJob/titanic-train must read TITANIC__DATABASE__URL from the "
                          f"same secretKeyRef as the API ({ref})")
        if not egress_allows(objs, job["metadata"].get("labels", {}), 5432):
            errors.append("no NetworkPolicy lets the training Job reach the database (5432)")
    if not egress_allows(objs, api["spec"]["template"]["metadata"].get("labels", {}), 5432):
        errors.append("no NetworkPolicy lets the API reach the database (5432)")
    return errors


def cmd_manifests(args):
    crd_schemas = load_crd_schemas()
    errors = []
    for arg in args:
        overlay, path = arg.split("=", 1)
        with open(path) as f:
            objs = [o for o in yaml.safe_load_all(f) if o]
        kinds = {}
        for obj in objs:
            errors += [f"{overlay}: {e}" for e in validate_schema(obj, crd_schemas)]
            kinds[obj["kind"]] = kinds.get(obj["kind"], 0) + 1
        errors += invariants(overlay, objs)
        summary = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
        print(f"{overlay}: {len(objs)} objects ({summary})")
    if not errors:
        import kubernetes_validate
        print(f"ok: every object validates against Kubernetes {K8S_VERSIONS[0]} and "
              f"{kubernetes_validate.latest_version()} (strict) or kubernetes/schemas; "
              "invariants hold")
    fail(errors)


# --- Terraform --------------------------------------------------------------------------------


def cmd_hcl(args):
    import hcl2

    errors = []
    files = sorted(
        p for d in args for pattern in ("**/*.tf", "**/*.tfvars", "**/*.tfvars.example")
        for p in glob.glob(os.path.join(d, pattern), recursive=True)
        if "/.terraform/" not in p
    )
    blocks = {}
    for path in files:
        try:
            with open(path) as f:
                doc = hcl2.load(f)
        except Exception as e:  # the parser raises lark errors of several kinds
            errors.append(f"{os.path.relpath(path, ROOT)}: {e}")
            continue
        for kind, items in doc.items():
            if kind.startswith("__"):  # python-hcl2 keeps comments under __comments__
                continue
            blocks[kind] = blocks.get(kind, 0) + (len(items) if isinstance(items, list) else 1)
    if not files:
        errors.append("no Terraform files found")
    if not errors:
        summary = ", ".join(f"{k} {n}" for k, n in sorted(blocks.items()))
        print(f"ok: {len(files)} Terraform files parse ({summary})")
    fail(errors)


# --- Dockerfile and build context -------------------------------------------------------------


def cmd_dockerignore(args):
    """The allow-list .dockerignore must let through every path the Dockerfile copies."""
    import fnmatch
    import shlex

    with open(os.path.join(ROOT, ".dockerignore")) as f:
        patterns = [l.strip() for l in f if l.strip() and not l.startswith("#")]

    def included(path):
        keep = True
        for p in patterns:
            negate = p.startswith("!")
            pat = p[1:] if negate else p
            if fnmatch.fnmatch(path, pat) or path.startswith(pat.rstrip("/") + "/"):
                keep = negate
        return keep

    with open(os.path.join(ROOT, "Dockerfile")) as f:
        text = f.read().replace("\\\n", " ")
    errors, copied = [], 0
    for line in text.splitlines():
        words = shlex.split(line, comments=True) if line.strip().startswith("COPY") else []
        if not words or any(w.startswith("--from") for w in words):
            continue
        for src in [w for w in words[1:-1] if not w.startswith("--")]:
            copied += 1
            if not os.path.exists(os.path.join(ROOT, src)):
                errors.append(f"Dockerfile copies {src}, which does not exist")
            elif not included(src):
                errors.append(f"Dockerfile copies {src}, which .dockerignore leaves out")
    if not errors:
        print(f"ok: the {copied} paths the Dockerfile copies are in the build context")
    fail(errors)


def cmd_checkov_report(args):
    """Summary, failures and skips (with their reasons) of checkov's JSON report."""
    with open(args[0]) as f:
        reports = json.load(f)
    if isinstance(reports, dict):
        reports = [reports]
    errors, seen = [], set()
    for report in reports:
        kind, summary = report["check_type"], report["summary"]
        seen.add(kind)
        results = report.get("results", {})
        print(f"checkov {kind}: {summary['resource_count']} resources, {summary['passed']} passed, "
              f"{summary['failed']} failed, {summary['skipped']} skipped")
        for check in results.get("skipped_checks", []):
            reason = check.get("check_result", {}).get("suppress_comment", "").strip()
            print(f"  skipped {check['check_id']} on {check['resource']}: {reason}")
        for check in results.get("failed_checks", []):
            errors.append(f"checkov {check['check_id']} ({check['check_name']}) on "
                          f"{check['resource']} in {check['file_path']}")
        if summary.get("parsing_errors"):
            errors.append(f"checkov {kind}: {summary['parsing_errors']} files did not parse: "
                          f"{results.get('parsing_errors')}")
        if not summary["resource_count"]:
            errors.append(f"checkov {kind}: scanned nothing")
    for kind in args[1:]:
        if kind not in seen:
            errors.append(f"checkov did not scan any {kind} file")
    if not errors:
        print("ok: checkov, no failed check")
    fail(errors)


def main():
    commands = {"rules": cmd_rules, "manifests": cmd_manifests, "hcl": cmd_hcl,
                "dockerignore": cmd_dockerignore, "checkov-report": cmd_checkov_report}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(__doc__)
        sys.exit(2)
    commands[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
