"""Kueue on the local cluster (issue 33): its CRDs, its controller manager on loopback, its webhooks.

``python -m localcluster up --kueue`` (or ``python -m localcluster.kueue up --dir D`` on a running
cluster) applies the CRDs that ``localcluster/build_kueue.sh`` copied from the module, starts the
manager against the local apiserver with the admin kubeconfig, and registers Kueue's webhooks for
Jobs and its own kinds (their ``clientConfig.service`` replaced by a loopback URL, TLS from a CA
made here with ``certs.py``): the apiserver calls ``https://127.0.0.1:<port>``, so the serving
certificate names IP 127.0.0.1, which Kueue's internal certificate management (service DNS names
only) cannot issue. Only the ``batch/job`` integration is on: the Pod, Deployment, ... webhooks
would otherwise make every Pod creation depend on Kueue.

The manager runs under a watchdog shell (as kwok does, ``kwok.py``) that ends it when ``python -m
localcluster down`` removes the cluster's dir; ``python -m localcluster.kueue down`` stops it and
removes its webhooks, leaving the cluster as it was.

Kueue's manager reads the metrics server's certificate from the fixed path
``/etc/kueue/metrics/certs`` whenever internal certificate management is off (cmd/kueue/main.go),
even with metrics disabled: a self-signed pair is written there once if missing.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from localcluster import certs, procs
from localcluster import cluster as lc

VERSION = os.environ.get("KUEUE_VERSION", "v0.17.0")
HOME = lc.CACHE / f"kueue-{VERSION}"  # build_kueue.sh's output: bin/kueue, crds/, webhook.yaml
BUILD = Path(__file__).resolve().parent / "build_kueue.sh"
NAMESPACE = "kueue-system"
METRICS_CERTS = Path("/etc/kueue/metrics/certs")
# The CRDs Kueue serves in two versions (v1beta1, v1beta2): their conversion goes to the manager,
# as its kustomize patches (config/components/crd/patches/webhook_in_*.yaml) say.
CONVERTED = ("localqueues", "clusterqueues", "cohorts", "workloads", "multikueueclusters")
WEBHOOK_GROUPS = ("batch", "kueue.x-k8s.io")  # the webhooks kept: Jobs and Kueue's own kinds


def built() -> bool:
    return (HOME / ".built").exists()


def build() -> None:
    """Build Kueue into the cache if it is not there yet (``build_kueue.sh``, minutes cold)."""
    if not built():
        subprocess.run(["bash", str(BUILD)], check=True, env={**os.environ, "KUEUE_VERSION": VERSION})


def config_yaml(kdir: Path, webhook_port: int, health_port: int) -> str:
    """Kueue's Configuration: loopback ports, our certificates, Jobs only, no leader election."""
    config = {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "namespace": NAMESPACE,
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health_port}"},
        "metrics": {"bindAddress": "0"},  # off: nothing here scrapes it
        "webhook": {"port": webhook_port, "host": "127.0.0.1", "certDir": str(kdir / "certs")},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "manageJobsWithoutQueueName": False,  # only Jobs labelled with a queue are Kueue's
        "integrations": {"frameworks": ["batch/job"]},
        "clientConnection": {"qps": 50, "burst": 100},
        # The visibility API would be an aggregated apiserver on a fixed port: not needed here.
        "featureGates": {"VisibilityOnDemand": False},
    }
    return json.dumps(config, indent=1)  # JSON is YAML


def _request(st: lc.State, method: str, path: str, body: Any = None, ok: tuple[int, ...] = ()) -> Any:
    ctx = ssl.create_default_context(cafile=str(Path(st.dir) / "pki" / "ca.crt"))
    req = urllib.request.Request(
        f"https://127.0.0.1:{st.ports['apiserver']}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {st.token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=30) as r:
            return json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        if e.code in ok:
            return None
        raise RuntimeError(f"localcluster.kueue: {method} {path}: {e.code} {e.read()[:400]!r}") from None


def _apply(st: lc.State, collection: str, body: dict[str, Any]) -> None:
    """Create ``body`` in ``collection``, or replace the one of that name (a CRD of another run)."""
    name = body["metadata"]["name"]
    if _request(st, "POST", collection, body, ok=(409,)) is not None:
        return
    current = _request(st, "GET", f"{collection}/{name}")
    body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    _request(st, "PUT", f"{collection}/{name}", body)


def _load_yaml(path: Path) -> list[dict[str, Any]]:
    import yaml

    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _ca_bundle(kdir: Path) -> str:
    return base64.b64encode((kdir / "certs" / "ca.crt").read_bytes()).decode()


def apply_crds(st: lc.State, kdir: Path, webhook_port: int) -> None:
    crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    names = []
    for f in sorted((HOME / "crds").glob("*.yaml")):
        for crd in _load_yaml(f):
            plural = crd["spec"]["names"]["plural"]
            if plural in CONVERTED:
                crd["spec"]["conversion"] = {
                    "strategy": "Webhook",
                    "webhook": {
                        "clientConfig": {
                            "url": f"https://127.0.0.1:{webhook_port}/convert",
                            "caBundle": _ca_bundle(kdir),
                        },
                        "conversionReviewVersions": ["v1"],
                    },
                }
            _apply(st, crds, crd)
            names.append(crd["metadata"]["name"])

    def established() -> bool:
        for name in names:
            conds = (_request(st, "GET", f"{crds}/{name}").get("status") or {}).get("conditions") or []
            if not any(c["type"] == "Established" and c["status"] == "True" for c in conds):
                return False
        return True

    lc.wait_for("Kueue's CRDs established", established, 60)


def webhook_configurations(kdir: Path, webhook_port: int) -> list[dict[str, Any]]:
    """Kueue's webhook configurations for Jobs and its own kinds, pointed at the loopback manager."""
    out = []
    for doc in _load_yaml(HOME / "webhook.yaml"):
        kept = []
        for hook in doc.get("webhooks") or []:
            groups = {g for rule in hook.get("rules") or [] for g in rule.get("apiGroups") or []}
            if not groups & set(WEBHOOK_GROUPS):
                continue
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {
                "url": f"https://127.0.0.1:{webhook_port}{path}",
                "caBundle": _ca_bundle(kdir),
            }
            kept.append(hook)
        doc["metadata"]["name"] = "kueue-" + doc["metadata"]["name"]
        doc["webhooks"] = kept
        out.append(doc)
    return out


def _collection(kind: str) -> str:
    plural = (
        "mutatingwebhookconfigurations" if kind.startswith("Mutating") else "validatingwebhookconfigurations"
    )
    return f"/apis/admissionregistration.k8s.io/v1/{plural}"


def _metrics_certs() -> None:
    """The pair Kueue insists on reading at ``METRICS_CERTS`` (see the module's docstring)."""
    if (METRICS_CERTS / "tls.crt").exists() and (METRICS_CERTS / "tls.key").exists():
        return
    METRICS_CERTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=METRICS_CERTS.parent))
    certs.make_ca(tmp, "kueue-metrics-local", name="tls")
    with contextlib.suppress(OSError):  # another cluster wrote it meanwhile: theirs serves as well
        tmp.rename(METRICS_CERTS)


def running_pid(st: lc.State) -> int | None:
    """The manager's process group (its watchdog shell), from ``<dir>/kueue/pid``, if it runs."""
    return procs.recorded_pid(Path(st.dir) / "kueue" / "pid")


def _healthy(port: int, path: str) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return bool(r.status == 200)


def up(d: Path, timeout: float = 180.0) -> lc.State:
    """Start Kueue against the running cluster in ``d`` (or keep the one running); return once its
    webhooks answer the apiserver (a dry-run ResourceFlavor goes through them)."""
    st = lc.State.load(d)
    if st is None or not lc.alive(st):
        raise SystemExit(
            f"localcluster.kueue: no running cluster in {d}: python -m localcluster up --dir {d}"
        )
    build()
    kdir = Path(st.dir) / "kueue"
    logs = Path(st.dir) / "logs" / "kueue.log"
    pid = running_pid(st)
    if pid is None:
        kdir.mkdir(exist_ok=True)
        (kdir / "certs").mkdir(exist_ok=True)
        certs.make_ca(kdir / "certs", "kueue-webhook-local-ca")
        certs.issue(
            kdir / "certs",
            "tls",
            "kueue-webhook",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        )
        _metrics_certs()
        webhook_port, health_port = lc.free_port(), lc.free_port()
        (kdir / "ports.json").write_text(json.dumps({"webhook": webhook_port, "health": health_port}))
        (kdir / "config.yaml").write_text(config_yaml(kdir, webhook_port, health_port))
        _request(st, "POST", "/api/v1/namespaces", {"metadata": {"name": NAMESPACE}}, ok=(409,))
        apply_crds(st, kdir, webhook_port)
        args = [f"--config={kdir / 'config.yaml'}", f"--visibility-server-port={lc.free_port()}"]
        # Not in the cluster's State (a dead Kueue must not make the cluster look dead): a
        # watchdog ends it when the cluster's state file goes away (``localcluster down``).
        watchdog = (
            '"$0" "$@" & k=$!; trap \'kill $k 2>/dev/null; exit 0\' TERM INT; '
            "while [ -e cluster.json ] && kill -0 $k 2>/dev/null; do sleep 2; done; "
            "kill $k 2>/dev/null; wait $k"
        )
        logs.parent.mkdir(exist_ok=True)
        with open(logs, "ab") as out:
            proc = subprocess.Popen(
                ["sh", "-c", watchdog, str(HOME / "bin" / "kueue"), *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=st.dir,
                env={**os.environ, "KUBECONFIG": st.kubeconfig},
            )
        pid = proc.pid
        (kdir / "pid").write_text(str(pid))
    ports = json.loads((kdir / "ports.json").read_text())
    lc.wait_for("kueue /readyz", lambda: _healthy(ports["health"], "/readyz"), timeout, logs, pid)
    for doc in webhook_configurations(kdir, ports["webhook"]):
        _apply(st, _collection(doc["kind"]), doc)
    flavor = {
        "apiVersion": "kueue.x-k8s.io/v1beta2",
        "kind": "ResourceFlavor",
        "metadata": {"name": "localcluster-readiness-probe"},
    }
    lc.wait_for(
        "kueue webhooks",
        lambda: (
            _request(st, "POST", "/apis/kueue.x-k8s.io/v1beta2/resourceflavors?dryRun=All", flavor)
            is not None
        ),
        timeout,
        logs,
        pid,
    )
    return st


def down(d: Path) -> None:
    """Stop Kueue and remove its webhooks (Jobs are then admitted by nobody, but created again)."""
    st = lc.State.load(d)
    if st is None:
        return
    pid = running_pid(st)
    if pid is not None:
        procs.stop_group(pid)
    kdir = Path(st.dir) / "kueue"
    if (kdir / "ports.json").exists() and lc.alive(st):
        ports = json.loads((kdir / "ports.json").read_text())
        for doc in webhook_configurations(kdir, ports["webhook"]):
            _request(st, "DELETE", f"{_collection(doc['kind'])}/{doc['metadata']['name']}", ok=(404,))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m localcluster.kueue", description=__doc__.splitlines()[0])
    p.add_argument("command", choices=["up", "down", "build"])
    p.add_argument("--dir", type=Path, default=None, help="the running cluster's data dir")
    a = p.parse_args(argv)
    if a.command == "build":
        build()
        return
    d = (a.dir or lc.default_dir()).resolve()
    if a.command == "up":
        t0 = time.monotonic()
        up(d)
        print(f"localcluster.kueue: Kueue {VERSION} ready in {time.monotonic() - t0:.1f}s", file=sys.stderr)
    else:
        down(d)


if __name__ == "__main__":
    main()
