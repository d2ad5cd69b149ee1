"""Smoke Jobs on the local cluster: a plain Job, an Indexed Job, a failing Job; prints a table.

Used by the demo until the example DAGs run there, and handy to see the cluster work:
``python -m localcluster.smoke`` (with the cluster's env file sourced).
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from typing import Any

from kubernetes import client, config, watch

JOBS: list[tuple[str, dict[str, Any], str]] = [
    ("hello", {"completions": 3, "parallelism": 2}, "echo hello from $HOSTNAME"),
    (
        "indexed",
        {"completions": 5, "parallelism": 3, "completionMode": "Indexed"},
        "echo index $JOB_COMPLETION_INDEX",
    ),
    ("fails", {"backoffLimit": 1}, "echo failing; exit 3"),
]


def main() -> int:
    api = config.new_client_from_config(config_file=os.environ["KUBECONFIG"])
    core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
    ns = f"smoke-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": ns}})
    while not core.list_namespaced_service_account(ns).items:
        time.sleep(0.1)
    t0 = time.monotonic()
    for name, spec, script in JOBS:
        pod = {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox:1.36", "command": ["sh", "-c", script]}],
        }
        batch.create_namespaced_job(
            ns, {"metadata": {"name": name}, "spec": {"template": {"spec": pod}, **spec}}
        )
    finished: dict[str, tuple[str, str, float]] = {}
    w = watch.Watch()
    for ev in w.stream(batch.list_namespaced_job, ns, timeout_seconds=120):
        j = ev["object"]
        for c in j.status.conditions or []:
            if c.type in ("Complete", "Failed") and c.status == "True" and j.metadata.name not in finished:
                finished[j.metadata.name] = (c.type, c.reason or "", time.monotonic() - t0)
        if len(finished) == len(JOBS):
            w.stop()
    print(f"{'job':10} {'result':9} {'reason':22} {'seconds':>7}  first pod log")
    ok = True
    for name, _, _ in JOBS:
        result, reason, secs = finished.get(name, ("timeout", "", float("nan")))
        pods = core.list_namespaced_pod(ns, label_selector=f"batch.kubernetes.io/job-name={name}").items
        log = core.read_namespaced_pod_log(pods[0].metadata.name, ns, _preload_content=False).data.decode()
        first = log.strip().splitlines()[0] if log.strip() else ""
        print(f"{name:10} {result:9} {reason:22} {secs:7.1f}  {first}")
        ok &= result == ("Failed" if name == "fails" else "Complete")
    core.delete_namespace(ns)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
