"""What a rendered Kubernetes overlay says about running the titanic image, for podman.

scripts/container-smoke.sh runs the image as the production overlay describes it, read from
the rendered YAML (`kubectl kustomize`), never copied by hand:

  pod.py podman RENDERED.yaml OUT_DIR --secret NAME/KEY=VALUE ... [--pvc CLAIM=DIR ...]
      Writes OUT_DIR/pod.sh, to be sourced by bash: for the API Deployment's container
      (`api_*`) and the training CronJob's (`train_*`), the podman run arguments that
      reproduce its security context, environment (envFrom ConfigMaps, env values, Secret
      references resolved from --secret), volume mounts (Secret volumes as files with the
      volume's mode, group fsGroup; memory emptyDirs as tmpfs of their size; claims from
      --pvc, group fsGroup, setgid), resource requests and limits, its arguments, and the
      probes (path, port, timeout, period, thresholds) and grace period. Secret volumes are
      written under OUT_DIR/secrets. Fails on anything it cannot reproduce.

  pod.py nginx RENDERED.yaml CONF LISTEN_PORT UPSTREAM... [--prefix DIR]
      Writes an nginx configuration that does what ingress-nginx does with the overlay's
      Ingress: its paths (Prefix: the path and what lies below it, element by element; Exact),
      the body size and request buffering annotations, ingress-nginx's defaults for timeouts
      and retries where the Ingress sets none, and X-Forwarded-For set to the client's
      address (ingress-nginx's default without use-forwarded-headers). Everything else is
      404, as from the controller's default backend. TLS is not reproduced (no certificate).
"""

import argparse
import os
import re
import shlex
import sys

import yaml


def fail(message):
    print(f"FAIL pod.py: {message}", file=sys.stderr)
    sys.exit(1)


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def find(objs, kind, name=None):
    found = [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    if len(found) != 1:
        fail(f"expected one {kind} {name or ''} in the rendered overlay, found {len(found)}")
    return found[0]


def quantity_bytes(q):
    """A Kubernetes memory quantity (512Mi, 1G, 268435456) in bytes."""
    m = re.fullmatch(r"([0-9.]+)([KMGT]i?|[kmgt])?", str(q))
    if not m:
        fail(f"memory quantity {q!r}")
    units = {None: 1, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
             "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    return int(float(m.group(1)) * units[m.group(2)])


def quantity_cpus(q):
    """A Kubernetes CPU quantity (250m, 2, "0.5") in CPUs."""
    q = str(q)
    return int(q[:-1]) / 1000 if q.endswith("m") else float(q)


def container_args(objs, pod, container, secrets, pvcs, out_dir, prefix):
    """podman run arguments and facts for one container of a pod template."""
    spec_sc = pod.get("securityContext", {})
    sc = container.get("securityContext", {})
    args = []

    def setting(key, default=None):
        return sc.get(key, spec_sc.get(key, default))

    uid = setting("runAsUser")
    gid = setting("runAsGroup")
    if uid is None:
        fail(f"{container['name']}: no runAsUser (the image's USER would apply; state it)")
    if setting("runAsNonRoot") and uid == 0:
        fail(f"{container['name']}: runAsNonRoot with runAsUser 0")
    args += ["--user", f"{uid}:{gid if gid is not None else uid}"]
    fs_group = spec_sc.get("fsGroup")
    # The kubelet adds fsGroup and supplementalGroups to the process's groups.
    for group in ([fs_group] if fs_group is not None else []) + spec_sc.get("supplementalGroups", []):
        args += ["--group-add", str(group)]
    if sc.get("privileged"):
        fail(f"{container['name']}: privileged")
    if sc.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    if sc.get("readOnlyRootFilesystem"):
        # Only the root file system: no tmpfs of podman's own on /tmp, /var/tmp or /run.
        args += ["--read-only", "--read-only-tmpfs=false"]
    caps = sc.get("capabilities", {})
    for cap in caps.get("drop", []):
        args += ["--cap-drop", cap]
    for cap in caps.get("add", []):
        args += ["--cap-add", cap]
    seccomp = (sc.get("seccompProfile") or spec_sc.get("seccompProfile") or {}).get("type")
    if seccomp in (None, "RuntimeDefault"):
        pass  # podman's default profile is the runtime default
    elif seccomp == "Unconfined":
        args += ["--security-opt", "seccomp=unconfined"]
    else:
        fail(f"{container['name']}: seccomp profile {seccomp}")
    if pod.get("automountServiceAccountToken") is not False:
        fail(f"{container['name']}: a service account token would be mounted")

    # Environment: envFrom first, then env, which wins.
    env = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(find(objs, "ConfigMap", source["configMapRef"]["name"]).get("data", {}))
        else:
            fail(f"{container['name']}: envFrom {source}")
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = str(var["value"])
        elif "secretKeyRef" in var.get("valueFrom", {}):
            ref = var["valueFrom"]["secretKeyRef"]
            key = f"{ref['name']}/{ref['key']}"
            if key not in secrets:
                fail(f"{container['name']}: {var['name']} comes from the Secret {key}; pass --secret {key}=VALUE")
            env[var["name"]] = secrets[key]
        elif "configMapKeyRef" in var.get("valueFrom", {}):
            ref = var["valueFrom"]["configMapKeyRef"]
            env[var["name"]] = find(objs, "ConfigMap", ref["name"])["data"][ref["key"]]
        else:
            fail(f"{container['name']}: env {var}")

    # Volumes.
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        target = mount["mountPath"]
        if "secret" in volume:
            name = volume["secret"]["secretName"]
            mode = volume["secret"].get("defaultMode", 0o644)
            directory = os.path.join(out_dir, "secrets", f"{prefix}-{mount['name']}")
            os.makedirs(directory, exist_ok=True)
            os.chmod(directory, 0o755)
            keys = [k.split("/", 1)[1] for k in secrets if k.split("/", 1)[0] == name]
            if not keys:
                fail(f"{container['name']}: the Secret volume {name} has no --secret {name}/KEY")
            for key in keys:
                path = os.path.join(directory, key)
                with open(path, "w") as f:
                    f.write(secrets[f"{name}/{key}"])
                # The kubelet: root's files, group fsGroup, and with fsGroup group-readable.
                file_mode = mode | (0o040 if fs_group is not None else 0)
                os.chown(path, 0, fs_group if fs_group is not None else 0)
                os.chmod(path, file_mode)
            args += ["-v", f"{directory}:{target}:ro"]
        elif "emptyDir" in volume:
            empty = volume["emptyDir"] or {}
            options = ["rw", "mode=1777"]
            if "sizeLimit" in empty:
                options.append(f"size={quantity_bytes(empty['sizeLimit'])}")
            if empty.get("medium") != "Memory":
                fail(f"{container['name']}: an emptyDir on disk ({mount['name']})")
            args += ["--tmpfs", f"{target}:{','.join(options)}"]
        elif "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"]["claimName"]
            if claim not in pvcs:
                fail(f"{container['name']}: the claim {claim} needs --pvc {claim}=DIR")
            directory = pvcs[claim]
            # The kubelet with fsGroup: the volume's group, group-writable, setgid.
            if fs_group is not None:
                os.chown(directory, 0, fs_group)
                os.chmod(directory, 0o2775)
            args += ["-v", f"{directory}:{target}" + (":ro" if mount.get("readOnly") else "")]
        else:
            fail(f"{container['name']}: volume {mount['name']} of a kind not reproduced: {volume}")

    # Resources.
    resources = container.get("resources", {})
    limits, requests = resources.get("limits", {}), resources.get("requests", {})
    if "memory" in limits:
        args += ["--memory", str(quantity_bytes(limits["memory"]))]
    if "memory" in requests:
        args += ["--memory-reservation", str(quantity_bytes(requests["memory"]))]
    if "cpu" in limits:
        args += ["--cpus", f"{quantity_cpus(limits['cpu']):g}"]
    if "cpu" in requests:
        args += ["--cpu-shares", str(max(2, int(quantity_cpus(requests["cpu"]) * 1024)))]

    if container.get("command"):
        fail(f"{container['name']}: command overrides the image's entrypoint")
    return args, env, [str(a) for a in container.get("args", [])]


def probe(container, kind):
    p = container.get(kind)
    if not p:
        return None
    get = p.get("httpGet")
    if not get:
        fail(f"{container['name']}: {kind} is not an httpGet")
    port = get["port"]
    if isinstance(port, str):
        port = next(cp["containerPort"] for cp in container["ports"] if cp.get("name") == port)
    if get.get("scheme", "HTTP") != "HTTP":
        fail(f"{container['name']}: {kind} over {get['scheme']}")
    return [get["path"], str(port), str(p.get("timeoutSeconds", 1)), str(p.get("periodSeconds", 10)),
            str(p.get("failureThreshold", 3)), str(p.get("successThreshold", 1)),
            str(p.get("initialDelaySeconds", 0))]


def bash_array(name, values):
    return f"{name}=({' '.join(shlex.quote(str(v)) for v in values)})\n"


def bash_env(name, env):
    lines = [f"declare -gA {name}=()\n"]
    for k, v in sorted(env.items()):
        lines.append(f"{name}[{shlex.quote(k)}]={shlex.quote(v)}\n")
    return "".join(lines)


def cmd_podman(a):
    objs = load(a.rendered)
    secrets = dict(s.split("=", 1) for s in a.secret)
    pvcs = dict(p.split("=", 1) for p in a.pvc)
    deployment = find(objs, "Deployment", "titanic")
    pod = deployment["spec"]["template"]["spec"]
    (api,) = [c for c in pod["containers"] if c["name"] == "titanic"]
    cronjob = find(objs, "CronJob", "titanic-train")
    job_pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (train,) = job_pod["containers"]
    os.makedirs(a.out, exist_ok=True)
    out = ["# Written by scripts/container/pod.py from the rendered overlay; sourced by bash.\n"]
    for prefix, p, c in (("api", pod, api), ("train", job_pod, train)):
        args, env, cargs = container_args(objs, p, c, secrets, pvcs, a.out, prefix)
        out.append(bash_array(f"{prefix}_podman_args", args))
        out.append(bash_env(f"{prefix}_env", env))
        out.append(bash_array(f"{prefix}_args", cargs))
        out.append(f"{prefix}_grace={int(p.get('terminationGracePeriodSeconds', 30))}\n")
    for kind, var in (("startupProbe", "startup"), ("livenessProbe", "liveness"), ("readinessProbe", "readiness")):
        values = probe(api, kind)
        if values is None:
            fail(f"the API container has no {kind}")
        out.append(bash_array(f"api_{var}_probe", values))
    ports = [p["containerPort"] for p in api.get("ports", [])]
    out.append(f"api_container_port={ports[0]}\n")
    strategy = deployment["spec"].get("strategy", {})
    out.append(f"api_strategy={shlex.quote(strategy.get('type', 'RollingUpdate'))}\n")
    with open(os.path.join(a.out, "pod.sh"), "w") as f:
        f.writelines(out)


def cmd_nginx(a):
    objs = load(a.rendered)
    ingress = find(objs, "Ingress", "titanic")
    notes = ingress["metadata"].get("annotations", {})

    def annotation(name, default):
        return str(notes.get(f"nginx.ingress.kubernetes.io/{name}", default))

    # ingress-nginx's defaults where the Ingress sets nothing.
    body = annotation("proxy-body-size", "1m")
    buffering = annotation("proxy-request-buffering", "on")
    connect = annotation("proxy-connect-timeout", "5")
    send = annotation("proxy-send-timeout", "60")
    read = annotation("proxy-read-timeout", "60")
    next_upstream = annotation("proxy-next-upstream", "error timeout")
    tries = annotation("proxy-next-upstream-tries", "3")
    (rule,) = ingress["spec"]["rules"]
    prefix = a.prefix
    locations = []
    for path in rule["http"]["paths"]:
        p, kind = path["path"], path.get("pathType", "Prefix")
        if kind == "Exact":
            locations.append(f"location = {p}")
        else:
            # Kubernetes Prefix: /predict matches /predict and /predict/..., not /predictions.
            stem = p.rstrip("/")
            locations += [f"location = {stem}", f"location {stem}/"]
    proxy = f"""
            proxy_pass http://titanic;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Request-ID $req_id;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Port $server_port;
            proxy_connect_timeout {connect}s;
            proxy_send_timeout {send}s;
            proxy_read_timeout {read}s;
            proxy_request_buffering {buffering};
            proxy_buffering off;
            proxy_next_upstream {next_upstream};
            proxy_next_upstream_tries {tries};
"""
    servers = "".join(f"        server {u} max_fails=0;\n" for u in a.upstream)
    blocks = "".join(f"        {loc} {{{proxy}        }}\n" for loc in locations)
    conf = f"""# Written by scripts/container/pod.py from the Ingress `titanic` of the rendered overlay.
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    client_max_body_size {body};
    map $http_x_request_id $req_id {{ default $http_x_request_id; "" $request_id; }}
    upstream titanic {{
{servers}        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{a.port} default_server;
        server_name {rule.get('host', '_')};
{blocks}        location / {{ return 404; }}
    }}
}}
"""
    with open(a.conf, "w") as f:
        f.write(conf)


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("podman")
    p.add_argument("rendered")
    p.add_argument("out")
    p.add_argument("--secret", action="append", default=[])
    p.add_argument("--pvc", action="append", default=[])
    n = sub.add_parser("nginx")
    n.add_argument("rendered")
    n.add_argument("conf")
    n.add_argument("port")
    n.add_argument("upstream", nargs="+")
    n.add_argument("--prefix", required=True)
    a = parser.parse_args()
    {"podman": cmd_podman, "nginx": cmd_nginx}[a.cmd](a)


if __name__ == "__main__":
    main()
