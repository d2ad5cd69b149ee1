"""A small node agent: runs the Pods bound to its Node as local processes, like a kubelet.

It registers a Node (Ready, capacity, a renewed Lease), watches the Pods bound to it and runs
each Pod's init containers in order, then its containers, as host processes in a private mount
namespace (util-linux ``unshare --mount``; volumes are bind mounts at their ``mountPath``). It
writes Pod status the way the kubelet does, so the real Job controller counts successes,
failures, completion indexes and ``podFailurePolicy`` exit codes, and it serves container logs
on the node's kubelet port so ``kubectl logs`` works through the apiserver.

What differs from a kubelet (by design, documented in CONTRIBUTING.md):
- ``image`` is not pulled: the process runs on the host with the project's venv first on PATH.
  Images under the reserved registry ``unpullable.invalid/`` fail with ``ErrImagePull`` then
  ``ImagePullBackOff``, the way the kubelet reports an image it cannot pull.
- A container without ``command`` runs its ``args`` as the command line (there is no image
  entrypoint to fall back to).
- Resource limits, probes, and sidecar (``restartPolicy: Always``) init containers are ignored.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import http.server
import json
import logging
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from localcluster import agentimages, crilog
from localcluster.agentlogs import LogHandler

log = logging.getLogger("nodeagent")

PODEXEC = str(Path(__file__).with_name("podexec.py"))
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_VAR_REF = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")
_FIELD_REF = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: defined vars are replaced, ``$$`` escapes, others stay."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _VAR_REF.sub(sub, text)


def iter_watch(resp: Any) -> Iterator[dict[str, Any]]:
    """Yield the JSON events of a watch response read with ``_preload_content=False``."""
    buf = b""
    for chunk in resp.stream(65536, decode_content=True):
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line.strip():
                yield json.loads(line)


class ConfigError(Exception):
    """A container cannot be configured yet (missing Secret / ConfigMap key)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class Container:
    spec: dict[str, Any]
    init: bool
    restarts: int = 0
    state: dict[str, Any] = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: dict[str, Any] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    copier: threading.Thread | None = None

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    def status(self) -> dict[str, Any]:
        running = "running" in self.state
        return {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": "",
            "containerID": f"batchjob://{self.proc.pid}" if self.proc else "",
            "ready": running and not self.init,
            "started": running,
            "restartCount": self.restarts,
            "state": self.state,
            "lastState": self.last_state,
        }


class PodRunner(threading.Thread):
    """Runs one Pod to completion (or until deleted) and reports its status."""

    def __init__(self, agent: NodeAgent, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.agent = agent
        self.pod = pod
        self.ns: str = meta["namespace"]
        self.pod_name: str = meta["name"]
        self.uid: str = meta["uid"]
        self.dir = agent.workdir / "pods" / f"{self.ns}_{self.pod_name}_{self.uid}"
        spec = pod["spec"]
        self.restart_policy: str = spec.get("restartPolicy", "Always")
        self.inits = [Container(c, True) for c in spec.get("initContainers") or []]
        self.containers = [Container(c, False) for c in spec.get("containers") or []]
        self.stop = threading.Event()
        # Set when a container process exits or the Pod is deleted: the loops below sleep on it
        # instead of polling (100 Pods polled every 50 ms cost a core's fifth on 2 cores).
        self.changed = threading.Event()
        self.grace = 30.0
        self.phase = "Pending"
        self.start_time = now()
        self.conditions: dict[str, dict[str, Any]] = {}
        self.message: str | None = None
        self.reason: str | None = None

    # -- status ---------------------------------------------------------------------------
    def set_condition(self, ctype: str, status: bool, reason: str | None = None) -> None:
        value = "True" if status else "False"
        old = self.conditions.get(ctype)
        if old and old["status"] == value:
            return
        cond: dict[str, Any] = {
            "type": ctype,
            "status": value,
            "lastProbeTime": None,
            "lastTransitionTime": now(),
        }
        if reason:
            cond["reason"] = reason
        self.conditions[ctype] = cond

    def report(self) -> None:
        status: dict[str, Any] = {
            "phase": self.phase,
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "startTime": self.start_time,
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "True",
                    "lastProbeTime": None,
                    "lastTransitionTime": self.start_time,
                },
                *self.conditions.values(),
            ],
            "containerStatuses": [c.status() for c in self.containers],
            "initContainerStatuses": [c.status() for c in self.inits],
            "message": self.message,
            "reason": self.reason,
        }
        # Like the kubelet, keep trying through apiserver restarts: the status is the whole
        # desired state, so a late write is still right.
        delay, deadline = 0.2, time.monotonic() + 300
        while True:
            try:
                self.agent.core.patch_namespaced_pod_status(self.pod_name, self.ns, {"status": status})
                return
            except ApiException as e:
                if e.status == 404:
                    return
                if e.status not in (429, 500, 502, 503, 504) or time.monotonic() > deadline:
                    log.warning("status of %s/%s: %s", self.ns, self.pod_name, e.reason)
                    return
            except Exception as e:  # connection refused / reset while the apiserver restarts
                if time.monotonic() > deadline:
                    log.warning("status of %s/%s: %s", self.ns, self.pod_name, e)
                    return
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    # -- environment and volumes ----------------------------------------------------------
    def field_value(self, path: str) -> str:
        meta = self.pod["metadata"]
        m = _FIELD_REF.match(path)
        if m:
            return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
        simple = {
            "metadata.name": meta["name"],
            "metadata.namespace": meta["namespace"],
            "metadata.uid": meta["uid"],
            "spec.nodeName": self.agent.node_name,
            "spec.serviceAccountName": self.pod["spec"].get("serviceAccountName", ""),
            "status.hostIP": "127.0.0.1",
            "status.podIP": "127.0.0.1",
            "status.hostIPs": "127.0.0.1",
            "status.podIPs": "127.0.0.1",
        }
        if path not in simple:
            raise ConfigError("CreateContainerConfigError", f"unsupported fieldRef {path!r}")
        return str(simple[path])

    def key_of(self, kind: str, ref: dict[str, Any]) -> str | None:
        data = self.agent.read_data(kind, self.ns, ref["name"])
        if data is None or ref["key"] not in data:
            if ref.get("optional"):
                return None
            what = (
                f"{kind} {ref['name']!r}" if data is None else f"key {ref['key']!r} in {kind} {ref['name']!r}"
            )
            raise ConfigError("CreateContainerConfigError", f"{what} not found")
        return data[ref["key"]].decode(errors="replace")

    def container_env(self, spec: dict[str, Any]) -> dict[str, str]:
        api = self.agent.api_hostport
        env: dict[str, str] = {
            "PATH": f"{self.agent.venv_bin}:{DEFAULT_PATH}",
            "HOME": "/root",
            "HOSTNAME": self.pod["spec"].get("hostname") or self.pod_name,
            "KUBERNETES_SERVICE_HOST": api[0],
            "KUBERNETES_SERVICE_PORT": str(api[1]),
        }
        if lang := os.environ.get("LANG"):
            env["LANG"] = lang
        for src in spec.get("envFrom") or []:
            prefix = src.get("prefix", "")
            for kind in ("configMap", "secret"):
                ref = src.get(f"{kind}Ref")
                if not ref:
                    continue
                data = self.agent.read_data(kind, self.ns, ref["name"])
                if data is None:
                    if ref.get("optional"):
                        continue
                    raise ConfigError("CreateContainerConfigError", f"{kind} {ref['name']!r} not found")
                env.update({prefix + k: v.decode(errors="replace") for k, v in data.items()})
        for var in spec.get("env") or []:
            name = var["name"]
            if "valueFrom" not in var:
                env[name] = expand(var.get("value") or "", env)
                continue
            vf = var["valueFrom"]
            value: str | None
            if "fieldRef" in vf:
                value = self.field_value(vf["fieldRef"]["fieldPath"])
            elif "secretKeyRef" in vf:
                value = self.key_of("secret", vf["secretKeyRef"])
            elif "configMapKeyRef" in vf:
                value = self.key_of("configMap", vf["configMapKeyRef"])
            elif "resourceFieldRef" in vf:
                res = spec.get("resources") or {}
                rname = vf["resourceFieldRef"]["resource"]
                kind_, _, key = rname.partition(".")
                value = str((res.get(kind_) or {}).get(key, "0"))
            else:
                raise ConfigError("CreateContainerConfigError", f"unsupported valueFrom for {name}")
            if value is not None:
                env[name] = value
        return env

    def write_items(
        self,
        target: Path,
        data: dict[str, bytes],
        items: list[dict[str, Any]] | None,
        default_mode: int | None = None,
    ) -> None:
        """The files of a Secret / ConfigMap volume, with the kubelet's modes (``defaultMode``,
        an item's ``mode``; 0644 when neither is given)."""
        target.mkdir(parents=True, exist_ok=True)
        pairs = (
            [(i["key"], i["path"], i.get("mode")) for i in items] if items else [(k, k, None) for k in data]
        )
        for key, rel, mode in pairs:
            if key not in data:
                raise ConfigError("FailedMount", f"key {key!r} not found for volume item {rel!r}")
            out = target / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            out.unlink(missing_ok=True)  # written again (a restarted container) though read-only
            out.write_bytes(data[key])
            out.chmod(mode if mode is not None else default_mode if default_mode is not None else 0o644)

    def downward_items(self, target: Path, items: list[dict[str, Any]]) -> None:
        data = {}
        for item in items:
            if "fieldRef" in item:
                path = item["fieldRef"]["fieldPath"]
                if path in ("metadata.labels", "metadata.annotations"):
                    kv = self.pod["metadata"].get(path.split(".")[1]) or {}
                    data[item["path"]] = "\n".join(f'{k}="{v}"' for k, v in sorted(kv.items())).encode()
                else:
                    data[item["path"]] = self.field_value(path).encode()
        self.write_items(target, data, None)

    def source_data(self, kind: str, src: dict[str, Any]) -> dict[str, bytes] | None:
        name = src.get("name") or src.get("secretName")
        data = self.agent.read_data(kind, self.ns, str(name))
        if data is None and not src.get("optional"):
            raise ConfigError("FailedMount", f"{kind} {name!r} not found")
        return data

    def prepare_volumes(self) -> dict[str, Path]:
        vols: dict[str, Path] = {}
        for vol in self.pod["spec"].get("volumes") or []:
            target = self.dir / "volumes" / vol["name"]
            if "emptyDir" in vol:
                target.mkdir(parents=True, exist_ok=True)
            elif "configMap" in vol or "secret" in vol:
                kind = "configMap" if "configMap" in vol else "secret"
                data = self.source_data(kind, vol[kind])
                self.write_items(target, data or {}, vol[kind].get("items"), vol[kind].get("defaultMode"))
            elif "hostPath" in vol:
                target = Path(vol["hostPath"]["path"])
                if not target.exists() and vol["hostPath"].get("type") in ("DirectoryOrCreate", None, ""):
                    target.mkdir(parents=True, exist_ok=True)
            elif "downwardAPI" in vol:
                self.downward_items(target, vol["downwardAPI"].get("items") or [])
            elif "projected" in vol:
                target.mkdir(parents=True, exist_ok=True)
                for src in vol["projected"].get("sources") or []:
                    if "configMap" in src or "secret" in src:
                        kind = "configMap" if "configMap" in src else "secret"
                        data = self.source_data(kind, src[kind])
                        mode = vol["projected"].get("defaultMode")
                        self.write_items(target, data or {}, src[kind].get("items"), mode)
                    elif "downwardAPI" in src:
                        self.downward_items(target, src["downwardAPI"].get("items") or [])
                    elif "serviceAccountToken" in src:
                        sat = src["serviceAccountToken"]
                        token = self.agent.token_for(self.ns, self.pod, sat)
                        (target / sat.get("path", "token")).write_text(token)
            else:
                log.warning(
                    "%s/%s: volume %s of an unsupported type is an empty dir",
                    self.ns,
                    self.pod_name,
                    vol["name"],
                )
                target.mkdir(parents=True, exist_ok=True)
            vols[vol["name"]] = target
        return vols

    # -- processes -------------------------------------------------------------------------
    def start_container(self, c: Container, vols: dict[str, Path]) -> None:
        spec = c.spec
        env = self.container_env(spec)
        cmd = [expand(a, env) for a in spec.get("command") or []]
        args = [expand(a, env) for a in spec.get("args") or []]
        argv = cmd + args
        argv = agentimages.host_argv(argv)
        if not argv:
            raise ConfigError(
                "CreateContainerError", "no command or args: the node agent has no image entrypoint"
            )
        mounts = []
        for vm in spec.get("volumeMounts") or []:
            src = vols.get(vm["name"])
            if src is None:
                raise ConfigError("CreateContainerConfigError", f"volume {vm['name']!r} not found")
            if vm.get("subPath"):
                src = src / vm["subPath"]
                if not src.exists():
                    src.mkdir(parents=True)
            mounts.append(
                {"source": str(src), "target": vm["mountPath"], "readOnly": bool(vm.get("readOnly"))}
            )
        term = self.dir / f"{c.name}.termination-log"
        term.write_bytes(b"")
        mounts.append(
            {"source": str(term), "target": spec.get("terminationMessagePath") or "/dev/termination-log"}
        )
        spec_file = self.dir / f"{c.name}.{c.restarts}.exec.json"
        spec_file.write_text(
            json.dumps({"argv": argv, "env": env, "mounts": mounts, "cwd": spec.get("workingDir") or "/"})
        )
        c.log_path = self.agent.log_path(self.ns, self.pod_name, self.uid, c.name, c.restarts)
        c.log_path.parent.mkdir(parents=True, exist_ok=True)
        c.log_path.write_bytes(b"")
        # Output goes through a pipe into CRI records (crilog), as containerd writes them.
        c.proc = subprocess.Popen(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "--",
                sys.executable,
                "-I",
                PODEXEC,
                str(spec_file),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        assert c.proc.stdout is not None
        threading.Thread(target=self._reap, args=(c.proc,), name=f"reap-{c.proc.pid}", daemon=True).start()
        c.copier = crilog.copy_output(c.proc.stdout, c.log_path)
        self.agent.pid_dir.joinpath(str(c.proc.pid)).touch()
        c.state = {"running": {"startedAt": now()}}

    def finish(self, c: Container, code: int) -> None:
        """Record a container's exit like the kubelet: exit code, reason, termination message."""
        started = c.state.get("running", {}).get("startedAt", now())
        if c.proc:
            # When a container's main process ends, the runtime ends the rest of the container
            # (its PID namespace dies with PID 1): kill what it left behind in its process group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(c.proc.pid, signal.SIGKILL)
            self.agent.pid_dir.joinpath(str(c.proc.pid)).unlink(missing_ok=True)
        if c.copier is not None:  # the last output is in the log before the container counts as done
            c.copier.join(timeout=5)
        message = ""
        term = self.dir / f"{c.name}.termination-log"
        if term.exists():
            message = term.read_bytes()[:4096].decode(errors="replace")
        fallback = c.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError"
        if not message and code != 0 and fallback and c.log_path and c.log_path.exists():
            lines = crilog.plain(c.log_path).splitlines()[-80:]
            message = b"\n".join(lines)[-2048:].decode(errors="replace")
        terminated: dict[str, Any] = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": started,
            "finishedAt": now(),
            "containerID": f"batchjob://{c.proc.pid}" if c.proc else "",
        }
        if message:
            terminated["message"] = message
        c.state = {"terminated": terminated}

    def _reap(self, proc: subprocess.Popen[bytes]) -> None:
        """Block in waitpid (no CPU) until the process exits, then wake the Pod's loop."""
        proc.wait()
        self.changed.set()

    def request_stop(self) -> None:
        """The Pod is being deleted: stop waiting and kill its containers."""
        self.stop.set()
        self.changed.set()

    def wait_proc(self, c: Container) -> int | None:
        """Wait for the container process; None when the Pod is being deleted instead."""
        assert c.proc is not None
        while True:
            self.changed.clear()  # before poll: an exit after it sets the event again
            code = c.proc.poll()
            if code is not None:
                return code if code >= 0 else 128 - code
            if self.stop.is_set():
                return None
            self.changed.wait()

    def kill_all(self) -> None:
        """Pod deletion: SIGTERM every running container, SIGKILL after the grace period."""
        live = [c for c in self.inits + self.containers if c.proc and c.proc.poll() is None]
        for c in live:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(c.proc.pid, signal.SIGTERM)  # type: ignore[union-attr]
        deadline = time.monotonic() + self.grace
        for c in live:
            assert c.proc is not None
            try:
                c.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(c.proc.pid, signal.SIGKILL)
                c.proc.wait()
            code = c.proc.returncode
            self.finish(c, code if code >= 0 else 128 - code)

    def backoff(self, c: Container) -> bool:
        """Crash-loop backoff before a restart (shortened: 1 s doubling to 10 s). False if deleted."""
        delay = min(10.0, 2.0 ** max(0, c.restarts - 1))
        c.last_state = c.state
        c.restarts += 1
        c.state = {
            "waiting": {
                "reason": "CrashLoopBackOff",
                "message": f"back-off {delay:.0f}s restarting failed container={c.name}",
            }
        }
        self.report()
        return not self.stop.wait(delay)

    def image_pull(self, c: Container) -> bool:
        """Images under the reserved registry never pull; report it like the kubelet, until deleted."""
        attempt = 0
        while (waiting := agentimages.pull_error(str(c.spec.get("image", "")), attempt)) is not None:
            if self.stop.is_set():
                return False
            c.state = {"waiting": waiting}
            self.report()
            attempt += 1
            self.stop.wait(2.0)
        return True

    def run_init(self, c: Container, vols: dict[str, Path]) -> bool:
        while True:
            if not self.image_pull(c):
                return False
            self.start_container(c, vols)
            self.report()
            code = self.wait_proc(c)
            if code is None:
                return False
            self.finish(c, code)
            if code == 0:
                return True
            if self.restart_policy == "Never":
                return False
            if not self.backoff(c):
                return False

    def run_main(self, vols: dict[str, Path]) -> None:
        for c in self.containers:
            if not self.image_pull(c):
                return
        for c in self.containers:
            self.start_container(c, vols)
        self.phase = "Running"
        self.set_condition("ContainersReady", True)
        self.set_condition("Ready", True)
        self.report()
        pending = list(self.containers)
        while pending and not self.stop.is_set():
            self.changed.clear()  # before polling: an exit after it sets the event again
            for c in list(pending):
                assert c.proc is not None
                code = c.proc.poll()
                if code is None:
                    continue
                self.finish(c, code if code >= 0 else 128 - code)
                restart = self.restart_policy == "Always" or (
                    self.restart_policy == "OnFailure" and code != 0
                )
                if restart:
                    self.set_condition("ContainersReady", False)
                    self.set_condition("Ready", False)
                    if not self.backoff(c):
                        return
                    self.start_container(c, vols)
                    self.set_condition("ContainersReady", True)
                    self.set_condition("Ready", True)
                else:
                    pending.remove(c)
                    self.set_condition("ContainersReady", False, "PodCompleted")
                    self.set_condition("Ready", False, "PodCompleted")
                self.report()
            if pending:
                self.changed.wait()

    def run(self) -> None:
        try:
            self._run()
        except Exception:
            log.exception("pod %s/%s", self.ns, self.pod_name)
        finally:
            self.agent.runner_done(self)

    def _run(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.set_condition("PodReadyToStartContainers", True)
        self.set_condition(
            "Initialized", not self.inits, None if not self.inits else "ContainersNotInitialized"
        )
        self.set_condition("Ready", False, "ContainersNotReady")
        self.set_condition("ContainersReady", False, "ContainersNotReady")
        for c in self.inits:
            c.state = {"waiting": {"reason": "PodInitializing"}}
        while True:
            try:
                vols = self.prepare_volumes()
                break
            except ConfigError as e:
                for c in self.inits + self.containers:
                    c.state = {"waiting": {"reason": "ContainerCreating", "message": e.message}}
                self.report()
                self.agent.event(self.pod, "FailedMount", e.message)
                if self.stop.wait(2.0):
                    return self.deleted()
        self.report()
        try:
            for c in self.inits:
                if not self.run_init(c, vols):
                    if self.stop.is_set():
                        return self.deleted()
                    self.phase = "Failed"
                    self.report()
                    return self.done()
            if self.inits:
                self.set_condition("Initialized", True)
            self.run_main(vols)
        except ConfigError as e:
            for c in self.inits + self.containers:
                if "terminated" not in c.state:
                    c.state = {"waiting": {"reason": e.reason, "message": e.message}}
            self.report()
            self.agent.event(self.pod, "Failed", f"Error: {e.message}")
            self.stop.wait()
            return self.deleted()
        if self.stop.is_set():
            return self.deleted()
        codes = [c.state.get("terminated", {}).get("exitCode", 1) for c in self.containers]
        self.phase = "Succeeded" if all(code == 0 for code in codes) else "Failed"
        self.report()
        self.done()

    def deleted(self) -> None:
        """The Pod was deleted while running: stop it, report a terminal phase, finish the delete."""
        self.kill_all()
        codes = [c.state.get("terminated", {}).get("exitCode", 137) for c in self.containers]
        self.phase = "Succeeded" if codes and all(code == 0 for code in codes) else "Failed"
        for c in self.inits + self.containers:
            if "terminated" not in c.state:
                c.state = {
                    "terminated": {
                        "exitCode": 137,
                        "reason": "ContainerStatusUnknown",
                        "message": "The container could not be located when the pod was deleted.",
                        "startedAt": None,
                        "finishedAt": now(),
                    }
                }
        self.set_condition("Ready", False, "PodCompleted")
        self.set_condition("ContainersReady", False, "PodCompleted")
        self.report()
        self.agent.finalize_delete(self.ns, self.pod_name, self.uid)

    def done(self) -> None:
        log.info("pod %s/%s %s", self.ns, self.pod_name, self.phase)


class NodeAgent:
    def __init__(
        self,
        *,
        kubeconfig: str,
        node_name: str,
        workdir: Path,
        port: int,
        cert: str,
        key: str,
        cpu: str,
        memory: str,
        pods: str,
    ) -> None:
        self.api = config.new_client_from_config(config_file=kubeconfig)
        self.api.configuration.connection_pool_maxsize = 32
        self.api.rest_client.pool_manager.connection_pool_kw["maxsize"] = 32
        self.core = client.CoreV1Api(self.api)
        self.coord = client.CoordinationV1Api(self.api)
        host = urllib.parse.urlsplit(self.api.configuration.host)
        self.api_hostport = (host.hostname or "127.0.0.1", host.port or 443)
        self.node_name = node_name
        self.workdir = workdir
        self.port = port
        self.cert, self.key = cert, key
        self.capacity = {"cpu": cpu, "memory": memory, "pods": pods, "ephemeral-storage": "100Gi"}
        self.venv_bin = str(Path(sys.executable).parent)
        self.pid_dir = workdir / "pids"  # container process groups, so `down` can sweep them
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        self.runners: dict[str, PodRunner] = {}
        self.finished: dict[tuple[str, str], PodRunner] = {}
        self.lock = threading.Lock()

    # -- helpers used by runners -------------------------------------------------------------
    def read_data(self, kind: str, ns: str, name: str) -> dict[str, bytes] | None:
        try:
            if kind == "secret":
                s = self.core.read_namespaced_secret(name, ns)
                return {k: base64.b64decode(v) for k, v in (s.data or {}).items()}
            cm = self.core.read_namespaced_config_map(name, ns)
            out = {k: v.encode() for k, v in (cm.data or {}).items()}
            out.update({k: base64.b64decode(v) for k, v in (cm.binary_data or {}).items()})
            return out
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def token_for(self, ns: str, pod: dict[str, Any], sat: dict[str, Any]) -> str:
        sa = pod["spec"].get("serviceAccountName") or "default"
        body = {
            "spec": {
                "audiences": [sat["audience"]] if sat.get("audience") else None,
                "expirationSeconds": sat.get("expirationSeconds", 3600),
                "boundObjectRef": {
                    "kind": "Pod",
                    "apiVersion": "v1",
                    "name": pod["metadata"]["name"],
                    "uid": pod["metadata"]["uid"],
                },
            }
        }
        try:
            tr = self.core.create_namespaced_service_account_token(sa, ns, body)
            return str(tr.status.token)
        except ApiException as e:
            log.warning("token for %s/%s: %s", ns, sa, e.reason)
            return ""

    def event(self, pod: dict[str, Any], reason: str, message: str) -> None:
        meta = pod["metadata"]
        body = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "kind": "Pod",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
                "apiVersion": "v1",
            },
            "reason": reason,
            "message": message,
            "type": "Warning",
            "source": {"component": "kubelet", "host": self.node_name},
            "firstTimestamp": now(),
            "lastTimestamp": now(),
            "count": 1,
        }
        with contextlib.suppress(ApiException):
            self.core.create_namespaced_event(meta["namespace"], body)

    def log_path(self, ns: str, pod: str, uid: str, container: str, restart: int) -> Path:
        return self.workdir / "logs" / f"{ns}_{pod}_{uid}" / container / f"{restart}.log"

    def find_log(
        self, ns: str, pod: str, container: str, previous: bool
    ) -> tuple[Path, PodRunner | None] | None:
        with self.lock:
            runner = next((r for r in self.runners.values() if (r.ns, r.pod_name) == (ns, pod)), None)
            runner = runner or self.finished.get((ns, pod))
        if runner is None:
            return None
        c = next((c for c in runner.inits + runner.containers if c.name == container), None)
        if c is None or c.log_path is None:
            return None
        restart = c.restarts - 1 if previous else int(c.log_path.stem)
        path = self.log_path(ns, pod, runner.uid, container, restart)
        return (path, runner) if restart >= 0 and path.exists() else None

    def container_finished(self, runner: PodRunner, container: str) -> bool:
        c = next((c for c in runner.inits + runner.containers if c.name == container), None)
        return c is None or c.proc is None or c.proc.poll() is not None

    def runner_done(self, runner: PodRunner) -> None:
        with self.lock:
            self.runners.pop(runner.uid, None)
            self.finished[(runner.ns, runner.pod_name)] = runner
            if len(self.finished) > 5000:
                self.finished.pop(next(iter(self.finished)))

    def finalize_delete(self, ns: str, name: str, uid: str) -> None:
        """Complete a graceful delete with grace 0, as the kubelet does once containers stopped."""
        for attempt in range(30):  # through apiserver restarts
            try:
                self.core.delete_namespaced_pod(
                    name,
                    ns,
                    grace_period_seconds=0,
                    body=client.V1DeleteOptions(grace_period_seconds=0, preconditions={"uid": uid}),
                )
                return
            except ApiException as e:
                if e.status not in (404, 409):
                    log.warning("delete %s/%s: %s", ns, name, e.reason)
                return
            except Exception as e:
                log.warning("delete %s/%s (attempt %d): %s", ns, name, attempt + 1, e)
                time.sleep(min(5.0, 0.2 * 2**attempt))

    # -- node ------------------------------------------------------------------------------
    def node_status(self) -> dict[str, Any]:
        t = now()
        conds = [
            ("Ready", "True", "KubeletReady", "node agent is ready"),
            ("MemoryPressure", "False", "KubeletHasSufficientMemory", ""),
            ("DiskPressure", "False", "KubeletHasNoDiskPressure", ""),
            ("PIDPressure", "False", "KubeletHasSufficientPID", ""),
        ]
        return {
            "capacity": self.capacity,
            "allocatable": self.capacity,
            "conditions": [
                {
                    "type": c,
                    "status": s,
                    "reason": r,
                    "message": m,
                    "lastHeartbeatTime": t,
                    "lastTransitionTime": t,
                }
                for c, s, r, m in conds
            ],
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": self.node_name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.port}},
            "nodeInfo": {
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kernelVersion": os.uname().release,
                "osImage": "airflow-batchjob node agent",
                "containerRuntimeVersion": "batchjob://0.1",
                "kubeletVersion": "v1.37.2",
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }

    def register(self) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node_name,
                "labels": {
                    "kubernetes.io/hostname": self.node_name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "batchjob.airflow.io/node-agent": "true",
                },
            },
            "status": self.node_status(),
        }
        try:
            self.core.create_node(body)
        except ApiException as e:
            if e.status != 409:
                raise
            self.core.patch_node_status(self.node_name, {"status": self.node_status()})

    def heartbeat(self) -> None:
        """Renew the node Lease (and node status) so the node stays healthy for any observer."""
        while True:
            lease = {
                "metadata": {"name": self.node_name, "namespace": "kube-node-lease"},
                "spec": {
                    "holderIdentity": self.node_name,
                    "leaseDurationSeconds": 40,
                    "renewTime": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                },
            }
            try:
                try:
                    self.coord.patch_namespaced_lease(self.node_name, "kube-node-lease", lease)
                except ApiException as e:
                    if e.status != 404:
                        raise
                    self.coord.create_namespaced_lease("kube-node-lease", lease)
            except Exception as e:  # keep beating through apiserver restarts
                log.warning("lease: %s", e)
            time.sleep(10)

    def serve_logs(self) -> None:
        handler = type("Handler", (LogHandler,), {"agent": self})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        server.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        server.serve_forever()

    # -- pods ------------------------------------------------------------------------------
    def on_pod(self, etype: str, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        phase = (pod.get("status") or {}).get("phase")
        with self.lock:
            runner = self.runners.get(uid)
        if etype == "DELETED":
            if runner:
                runner.request_stop()
            return
        if meta.get("deletionTimestamp"):
            if runner:
                runner.grace = float(meta.get("deletionGracePeriodSeconds") or 0)
                runner.request_stop()
            elif phase in ("Succeeded", "Failed") or uid not in self.seen:
                self.finalize_delete(meta["namespace"], meta["name"], uid)
            return
        if runner is None and uid not in self.seen and phase not in ("Succeeded", "Failed"):
            self.seen.add(uid)
            runner = PodRunner(self, pod)
            with self.lock:
                self.runners[uid] = runner
            runner.start()

    def watch_pods(self) -> None:
        self.seen: set[str] = set()
        selector = f"spec.nodeName={self.node_name}"
        rv = None
        while True:
            try:
                if rv is None:
                    pods = self.core.list_pod_for_all_namespaces(
                        field_selector=selector, _preload_content=False
                    )
                    body = json.loads(pods.data)
                    rv = body["metadata"]["resourceVersion"]
                    for pod in body["items"]:
                        self.on_pod("ADDED", pod)
                resp = self.core.list_pod_for_all_namespaces(
                    field_selector=selector,
                    watch=True,
                    resource_version=rv,
                    allow_watch_bookmarks=True,
                    timeout_seconds=300,
                    _preload_content=False,
                )
                for ev in iter_watch(resp):
                    obj = ev["object"]
                    if ev["type"] == "ERROR":
                        if obj.get("code") == 410:
                            rv = None
                        break
                    rv = obj["metadata"]["resourceVersion"]
                    if ev["type"] != "BOOKMARK":
                        self.on_pod(ev["type"], obj)
            except Exception as e:  # apiserver restarts, dropped connections
                log.warning("pod watch: %s", e)
                time.sleep(1)

    def run(self) -> None:
        self.register()
        threading.Thread(target=self.heartbeat, daemon=True).start()
        threading.Thread(target=self.serve_logs, daemon=True).start()
        log.info("node %s ready; kubelet port %d", self.node_name, self.port)
        self.watch_pods()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--node-name", default="batchjob-node")
    p.add_argument("--workdir", required=True, type=Path)
    p.add_argument("--port", required=True, type=int, help="kubelet port (serves container logs)")
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--cpu", default="8")
    p.add_argument("--memory", default="16Gi")
    p.add_argument("--pods", default="110")
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(threadName)s %(message)s")
    NodeAgent(
        kubeconfig=a.kubeconfig,
        node_name=a.node_name,
        workdir=a.workdir,
        port=a.port,
        cert=a.cert,
        key=a.key,
        cpu=a.cpu,
        memory=a.memory,
        pods=a.pods,
    ).run()


if __name__ == "__main__":
    main()
