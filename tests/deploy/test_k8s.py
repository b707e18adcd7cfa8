#!/usr/bin/python3
"""The Kubernetes manifests of deploy/k8s, without a cluster.

Renders them with `kubectl kustomize` and checks every object against the
API schema of its kind (k8s_schema.py: Debian's python3-kubernetes models
plus k8s-api-additions.json): an unknown field, a missing required field,
a wrong type or a value outside an enum fails. Then the cross-references
an apply would not catch: selectors match the pod labels, serviceName is
the headless Service, Service target ports, probe ports and scrape
annotations name container ports, the PDB selects the nodes and keeps a
Raft majority, mounts name volumes, the ConfigMap exists. The node's
command line is run through sh with a stand-in drift-node for several
pods, and must be SPEC 4b's (--node-id the pod name, --advertise its DNS
name, --join the first pods, none for the bootstrapping drift-node-0).
The ConfigMap's node.toml must be accepted by the real drift-node. Each
check is also run on a broken copy of the manifests, so a check that
cannot fail fails this test."""
import copy
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import tomllib

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(HERE, "..", "grpc"))
sys.path.insert(0, HERE)
import k8s_schema  # noqa: E402
from grpctest import Tap  # noqa: E402

T = Tap()
NODE = os.environ.get("DRIFT_NODE")
# The flags of SPEC 4b's drift-node command line, and their values'
# shape per pod.
NODE_FLAGS = ("--data-dir", "--listen", "--raft-listen", "--advertise",
              "--node-id", "--metrics-listen")


def render():
    p = subprocess.run(["kubectl", "kustomize",
                        os.path.join(ROOT, "deploy", "k8s")],
                       capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise RuntimeError("kubectl kustomize: " + p.stderr.strip())
    return [d for d in yaml.safe_load_all(p.stdout) if d is not None]


# ---- Cross-references ----

def by_kind(objs, kind):
    return [o for o in objs if o.get("kind") == kind]


def name(o):
    return o["metadata"]["name"]


def pod_spec(o):
    return o["spec"]["template"]["spec"]


def pod_labels(o):
    return o["spec"]["template"]["metadata"].get("labels", {})


def selects(selector, labels):
    ml = (selector or {}).get("matchLabels", {})
    return bool(ml) and all(labels.get(k) == v for k, v in ml.items())


def container_ports(o):
    ports = {}
    for c in pod_spec(o)["containers"]:
        for p in c.get("ports", []):
            ports[p.get("name")] = p["containerPort"]
    return ports


def check_refs(objs):
    """Every cross-reference problem, as a list of messages."""
    errs = []
    workloads = by_kind(objs, "StatefulSet") + by_kind(objs, "Deployment")
    services = {name(s): s for s in by_kind(objs, "Service")}
    configmaps = {name(c) for c in by_kind(objs, "ConfigMap")}
    accounts = {name(a) for a in by_kind(objs, "ServiceAccount")}
    for w in workloads:
        where = "%s/%s" % (w["kind"], name(w))
        labels = pod_labels(w)
        if not selects(w["spec"].get("selector"), labels):
            errs.append("%s: selector does not match its pod labels" % where)
        spec = pod_spec(w)
        ports = container_ports(w)
        numbers = set(ports.values())
        if spec.get("serviceAccountName") not in accounts:
            errs.append("%s: service account %s missing" %
                        (where, spec.get("serviceAccountName")))
        vols = {v["name"] for v in spec.get("volumes", [])}
        vols |= {v["metadata"]["name"] for v in
                 w["spec"].get("volumeClaimTemplates", [])}
        for v in spec.get("volumes", []):
            cm = v.get("configMap")
            if cm and cm["name"] not in configmaps:
                errs.append("%s: volume %s names a missing ConfigMap %s" %
                            (where, v["name"], cm["name"]))
        for c in spec["containers"]:
            for m in c.get("volumeMounts", []):
                if m["name"] not in vols:
                    errs.append("%s: mount %s has no volume" %
                                (where, m["name"]))
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                pr = c.get(probe)
                if pr is None:
                    if probe != "startupProbe":
                        errs.append("%s: no %s" % (where, probe))
                    continue
                g = pr.get("grpc")
                if g is None:
                    errs.append("%s: %s is not a gRPC health probe" %
                                (where, probe))
                elif g["port"] != ports.get("grpc"):
                    errs.append("%s: %s port %s is not the grpc port %s" %
                                (where, probe, g["port"], ports.get("grpc")))
            if c.get("readinessProbe", {}).get("grpc", {}).get(
                    "service") != "drift.v1.Drift":
                errs.append("%s: readiness must ask for drift.v1.Drift "
                            "(SERVING only once ready)" % where)
            res = c.get("resources", {})
            for part in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if r not in res.get(part, {}):
                        errs.append("%s: no %s.%s" % (where, part, r))
        ann = w["spec"]["template"]["metadata"].get("annotations", {})
        if ann.get("prometheus.io/scrape") != "true" or \
                str(ports.get("metrics")) != ann.get("prometheus.io/port"):
            errs.append("%s: the metrics port %s is not annotated for "
                        "scraping (%s)" % (where, ports.get("metrics"), ann))
        # A Service must select this workload's pods and target its ports.
        mine = [s for s in services.values()
                if s["spec"].get("selector") and
                all(labels.get(k) == v
                    for k, v in s["spec"]["selector"].items())]
        if not mine:
            errs.append("%s: no Service selects its pods" % where)
        for s in mine:
            for p in s["spec"]["ports"]:
                tp = p.get("targetPort", p["port"])
                if (isinstance(tp, str) and tp not in ports) or \
                        (isinstance(tp, int) and tp not in numbers):
                    errs.append("Service/%s: targetPort %s is no container "
                                "port of %s" % (name(s), tp, where))
    for s in by_kind(objs, "StatefulSet"):
        svc = services.get(s["spec"].get("serviceName"))
        if svc is None:
            errs.append("StatefulSet/%s: serviceName %s is no Service" %
                        (name(s), s["spec"].get("serviceName")))
        elif svc["spec"].get("clusterIP") != "None":
            errs.append("StatefulSet/%s: Service %s is not headless" %
                        (name(s), name(svc)))
        elif not svc["spec"].get("publishNotReadyAddresses"):
            errs.append("Service/%s: peers must resolve before they are "
                        "ready (publishNotReadyAddresses)" % name(svc))
        elif not all(pod_labels(s).get(k) == v
                     for k, v in svc["spec"]["selector"].items()):
            errs.append("Service/%s does not select the StatefulSet's pods"
                        % name(svc))
        pdbs = [p for p in by_kind(objs, "PodDisruptionBudget")
                if selects(p["spec"].get("selector"), pod_labels(s))]
        n = s["spec"].get("replicas", 1)
        majority = n // 2 + 1
        if not pdbs:
            errs.append("StatefulSet/%s: no PodDisruptionBudget selects its "
                        "pods" % name(s))
        for p in pdbs:
            sp = p["spec"]
            ok = ("maxUnavailable" in sp and isinstance(
                sp["maxUnavailable"], int) and
                sp["maxUnavailable"] <= n - majority) or \
                ("minAvailable" in sp and isinstance(sp["minAvailable"], int)
                 and sp["minAvailable"] >= majority)
            if not ok:
                errs.append("PodDisruptionBudget/%s: does not keep %d of %d "
                            "(a Raft majority)" % (name(p), majority, n))
    return errs


# ---- The node's command line ----

def node_script(objs):
    s = by_kind(objs, "StatefulSet")[0]
    c = pod_spec(s)["containers"][0]
    if c.get("command") != ["/bin/sh", "-ec"] or len(c.get("args", [])) != 1:
        raise RuntimeError("the node's command is not sh -ec SCRIPT")
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    return c["args"][0], env


def run_script(script, env, pod, tmp, peers_resolve, data_dir):
    """Runs the StatefulSet's script as pod `pod` with stand-ins for
    drift-node (prints its argv) and getent; returns the argv."""
    bin_dir = os.path.join(tmp, "bin")
    os.makedirs(bin_dir, exist_ok=True)
    with open(os.path.join(bin_dir, "drift-node"), "w") as f:
        f.write('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    with open(os.path.join(bin_dir, "getent"), "w") as f:
        f.write("#!/bin/sh\nexit %d\n" % (0 if peers_resolve else 2))
    for b in ("drift-node", "getent"):
        os.chmod(os.path.join(bin_dir, b), 0o755)
    e = {"PATH": bin_dir + ":/usr/bin:/bin", "POD_NAME": pod,
         "POD_NAMESPACE": "ns1"}
    e.update({k: v for k, v in env.items() if v is not None})
    script = script.replace("/data/drift", data_dir)
    p = subprocess.run(["/bin/sh", "-ec", script], env=e,
                       capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        raise RuntimeError("script failed for %s: %s" % (pod, p.stderr))
    return p.stdout.splitlines()


def flags(argv):
    out = {}
    i = 0
    while i < len(argv):
        out[argv[i]] = argv[i + 1] if i + 1 < len(argv) else None
        i += 2
    return out


def script_cases(objs, tmp):
    script, env = node_script(objs)
    dom = "drift-nodes.ns1.svc.cluster.local"
    empty = os.path.join(tmp, "empty")
    full = os.path.join(tmp, "full")
    os.makedirs(empty)
    os.makedirs(full)
    open(os.path.join(full, "node-id"), "w").close()
    cases = [
        ("drift-node-0", False, empty, None,
         "drift-node-0, first start: bootstraps (no --join)"),
        ("drift-node-0", True, full, None,
         "drift-node-0 with its data: restarts from it (no --join)"),
        ("drift-node-0", True, empty,
         ["drift-node-1", "drift-node-2"],
         "drift-node-0 that lost its volume joins the others"),
        ("drift-node-1", True, empty, ["drift-node-0", "drift-node-2"],
         "drift-node-1 joins the other first pods"),
        ("drift-node-4", True, empty,
         ["drift-node-0", "drift-node-1", "drift-node-2"],
         "drift-node-4 joins the first three pods"),
    ]
    for pod, resolve, data, join, what in cases:
        f = flags(run_script(script, env, pod, tmp, resolve, data))
        want_join = None if join is None else \
            ",".join("%s.%s:7401" % (j, dom) for j in join)
        ok = (all(k in f for k in NODE_FLAGS) and
              f["--node-id"] == pod and
              f["--advertise"] == "%s.%s:7401" % (pod, dom) and
              f.get("--join") == want_join and
              f["--data-dir"] == data and
              f.get("--config") == "/etc/drift/node.toml")
        T.check(ok, "%s: %s" % (what, f))
    return env


# ---- The ConfigMap's configuration ----

def config_cases(objs, tmp):
    cm = by_kind(objs, "ConfigMap")[0]
    text = cm["data"]["node.toml"]
    cfg = tomllib.loads(text)
    s = by_kind(objs, "StatefulSet")[0]
    c = pod_spec(s)["containers"][0]
    limit = parse_quantity(c["resources"]["limits"]["memory"])
    budget = parse_quantity(cfg["memory"]["budget"].replace("B", ""))
    T.check(0 < budget < limit, "memory.budget %s is under the container's "
            "memory limit %s" % (cfg["memory"]["budget"],
                                 c["resources"]["limits"]["memory"]))
    grace = parse_seconds(cfg["node"]["shutdown_grace"])
    term = pod_spec(s)["terminationGracePeriodSeconds"]
    # A leader's hand-over is an election: a few seconds (Raft election
    # timeouts are about a second); 15 s allows for a slow one.
    T.check(term >= grace + 15, "terminationGracePeriodSeconds %d covers "
            "the shutdown grace %gs and a leader hand-over" % (term, grace))
    mount = [m for m in c["volumeMounts"] if m["name"] == "config"][0]
    T.check(mount["mountPath"] == "/etc/drift",
            "node.toml is mounted where the command line reads it")
    if NODE is None:
        T.check(False, "DRIFT_NODE is not set: cannot check node.toml")
        return
    path = os.path.join(tmp, "node.toml")
    with open(path, "w") as f:
        f.write(text)
    # The tunables of node.toml, on this machine's scale: the real binary
    # must accept every key and value.
    p = subprocess.Popen([NODE, "--config", path, "--data-dir",
                          os.path.join(tmp, "cfgdata"), "--listen",
                          "127.0.0.1:0", "--log-level", "warn"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    line = p.stdout.readline()
    started = line.startswith("listening on ")
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=30)
    T.check(started, "drift-node accepts the ConfigMap's node.toml (%s)" %
            (line.strip() or err.strip()[:200]))


def parse_quantity(q):
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
             "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
    for u, m in units.items():
        if q.endswith(u):
            return float(q[:-len(u)]) * m
    return float(q)


def parse_seconds(d):
    for u, m in (("ms", 1e-3), ("s", 1), ("m", 60), ("h", 3600)):
        if d.endswith(u) and d[:-len(u)].replace(".", "").isdigit():
            return float(d[:-len(u)]) * m
    raise ValueError("duration %r" % d)


# ---- Broken copies: each check must catch its fault ----

def sts(objs):
    return by_kind(objs, "StatefulSet")[0]


def mutate_unknown_field(o):
    pod_spec(sts(o))["containers"][0]["imagePullPolicyy"] = "Always"


def mutate_missing_required(o):
    del pod_spec(sts(o))["containers"][0]["name"]


def mutate_wrong_type(o):
    sts(o)["spec"]["replicas"] = "3"


def mutate_env_int(o):
    pod_spec(sts(o))["containers"][0]["env"][2]["value"] = 3


def mutate_enum(o):
    sts(o)["spec"]["podManagementPolicy"] = "Sometimes"


def mutate_quantity(o):
    pod_spec(sts(o))["containers"][0]["resources"]["limits"]["memory"] = \
        "8 gigs"


def mutate_grpc_probe(o):
    del pod_spec(sts(o))["containers"][0]["livenessProbe"]["grpc"]["port"]


def mutate_selector(o):
    sts(o)["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] \
        = "nodes"


def mutate_service_name(o):
    sts(o)["spec"]["serviceName"] = "drift-node"


def mutate_probe_port(o):
    pod_spec(sts(o))["containers"][0]["readinessProbe"]["grpc"]["port"] = 7411


def mutate_target_port(o):
    [s for s in by_kind(o, "Service") if name(s) == "drift"][0]["spec"][
        "ports"][0]["targetPort"] = "grcp"


def mutate_pdb(o):
    [p for p in by_kind(o, "PodDisruptionBudget")
     if name(p) == "drift-node"][0]["spec"]["maxUnavailable"] = 2


def mutate_pdb_selector(o):
    [p for p in by_kind(o, "PodDisruptionBudget")
     if name(p) == "drift-node"][0]["spec"]["selector"]["matchLabels"][
        "app.kubernetes.io/component"] = "router"


def mutate_annotation(o):
    sts(o)["spec"]["template"]["metadata"]["annotations"][
        "prometheus.io/port"] = "9100"


def mutate_configmap(o):
    pod_spec(sts(o))["volumes"][0]["configMap"]["name"] = "drift-node-config"


def mutate_mount(o):
    pod_spec(sts(o))["containers"][0]["volumeMounts"][0]["name"] = "date"


MUTATIONS = [
    (mutate_unknown_field, "schema", "an unknown field"),
    (mutate_missing_required, "schema", "a missing required field"),
    (mutate_wrong_type, "schema", "replicas as a string"),
    (mutate_env_int, "schema", "an env value that is not a string"),
    (mutate_enum, "schema", "a podManagementPolicy outside the enum"),
    (mutate_quantity, "schema", "a bad memory quantity"),
    (mutate_grpc_probe, "schema", "a gRPC probe without its port"),
    (mutate_selector, "refs", "a selector that misses the pod labels"),
    (mutate_service_name, "refs", "serviceName naming no Service"),
    (mutate_probe_port, "refs", "a probe on the Raft port"),
    (mutate_target_port, "refs", "a Service targetPort no container has"),
    (mutate_pdb, "refs", "a PDB that allows losing the majority"),
    (mutate_pdb_selector, "refs", "a PDB that selects no node"),
    (mutate_annotation, "refs", "a scrape annotation on the wrong port"),
    (mutate_configmap, "refs", "a volume naming a missing ConfigMap"),
    (mutate_mount, "refs", "a mount without a volume"),
]


def schema_errors(objs):
    return [e for o in objs for e in k8s_schema.validate(o)]


def main():
    tmp = tempfile.mkdtemp(prefix="drift-k8s-")
    try:
        objs = render()
        kinds = sorted({o["kind"] for o in objs})
        T.check(kinds == ["ConfigMap", "Deployment", "Namespace",
                          "PodDisruptionBudget", "Service", "ServiceAccount",
                          "StatefulSet"],
                "kubectl kustomize renders every kind: %s" % kinds)
        for o in objs:
            errs = k8s_schema.validate(o)
            T.check(not errs, "%s/%s matches the API schema %s" %
                    (o["kind"], name(o), errs[:3]))
        errs = check_refs(objs)
        T.check(not errs, "cross-references hold %s" % errs)
        for fn, kind, what in MUTATIONS:
            broken = copy.deepcopy(objs)
            fn(broken)
            found = schema_errors(broken) if kind == "schema" else \
                check_refs(broken)
            T.check(bool(found), "caught: %s (%s)" %
                    (what, found[0] if found else "nothing reported"))
        script_cases(objs, tmp)
        config_cases(objs, tmp)
    except Exception as e:  # noqa: BLE001 - a failed check, reported
        T.check(False, "raised %s: %s" % (type(e).__name__, e))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    T.done()


if __name__ == "__main__":
    main()
