"""Access to the local cluster: admin requests, kubeconfigs, and the least-privilege identity
Airflow uses in tests (a ServiceAccount granted deploy/rbac/role.yaml, nothing more).
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import urllib.error
import urllib.request
from pathlib import Path

from localcluster.launch import wait_for
from localcluster.state import ROOT, State

AIRFLOW_SA_NAMESPACE = "batchjob-airflow"
AIRFLOW_SA = "airflow"
RBAC_ROLE = ROOT / "deploy" / "rbac" / "role.yaml"


def api_get(st: State, path: str) -> bytes:
    ctx = ssl.create_default_context(cafile=str(Path(st.dir) / "pki" / "ca.crt"))
    req = urllib.request.Request(
        f"https://127.0.0.1:{st.ports['apiserver']}{path}", headers={"Authorization": f"Bearer {st.token}"}
    )
    with urllib.request.urlopen(req, context=ctx, timeout=5) as r:
        return bytes(r.read())


def api_send(st: State, method: str, path: str, body: object, ok_conflict: bool = True) -> dict[str, object]:
    """An admin request with a JSON body; 409 AlreadyExists counts as done when ``ok_conflict``."""
    ctx = ssl.create_default_context(cafile=str(Path(st.dir) / "pki" / "ca.crt"))
    req = urllib.request.Request(
        f"https://127.0.0.1:{st.ports['apiserver']}{path}",
        data=json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {st.token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return dict(json.loads(r.read()))
    except urllib.error.HTTPError as e:
        if e.code == 409 and ok_conflict:
            return {}
        raise RuntimeError(f"localcluster: {method} {path}: {e.code} {e.read()[:300]!r}") from None


def write_kubeconfig(st: State) -> None:
    """The admin kubeconfig (the cluster's static admin token)."""
    write_client_kubeconfig(st, Path(st.kubeconfig), st.token, user="admin")


def grant(st: State, namespace: str) -> None:
    """Apply deploy/rbac/role.yaml in ``namespace`` and bind it to the Airflow ServiceAccount."""
    import yaml

    role = yaml.safe_load(RBAC_ROLE.read_text())
    base = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
    api_send(st, "POST", f"{base}/roles", role)
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": role["metadata"]["name"]},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": role["metadata"]["name"],
        },
        "subjects": [{"kind": "ServiceAccount", "name": AIRFLOW_SA, "namespace": AIRFLOW_SA_NAMESPACE}],
    }
    api_send(st, "POST", f"{base}/rolebindings", binding)
    # The RBAC authorizer works from an informer cache: wait until the grant is in effect.
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": f"system:serviceaccount:{AIRFLOW_SA_NAMESPACE}:{AIRFLOW_SA}",
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{AIRFLOW_SA_NAMESPACE}"],
            "resourceAttributes": {
                "namespace": namespace,
                "verb": "create",
                "group": "batch",
                "resource": "jobs",
            },
        },
    }
    sar = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
    wait_for(
        f"RBAC grant in {namespace}",
        lambda: bool(api_send(st, "POST", sar, review, ok_conflict=False)["status"]["allowed"]),  # type: ignore[index]
        30,
    )


def write_client_kubeconfig(
    st: State, path: Path, token: str, server: str | None = None, user: str = "airflow"
) -> str:
    """A kubeconfig (mode 600) for ``token`` against the apiserver (or ``server``, e.g. a fault proxy)."""
    ca = base64.b64encode((Path(st.dir) / "pki" / "ca.crt").read_bytes()).decode()
    kc = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "batchjob",
        "clusters": [
            {
                "name": "batchjob",
                "cluster": {
                    "server": server or f"https://127.0.0.1:{st.ports['apiserver']}",
                    "certificate-authority-data": ca,
                },
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [
            {
                "name": "batchjob",
                "context": {"cluster": "batchjob", "user": user, "namespace": "default"},
            }
        ],
    }
    # Created private: the token must never be readable by others, not even for a moment.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(kc, indent=1))
    return str(path)


def airflow_identity(st: State) -> str:
    """Token of the ServiceAccount ``batchjob-airflow/airflow``, which holds no rights until ``grant``.

    Written to ``<dir>/airflow.token`` (and ``airflow.kubeconfig``) once; tokens are signed with
    the cluster's key, so they survive apiserver restarts.
    """
    token_file = Path(st.dir) / "airflow.token"
    if token_file.exists():
        return token_file.read_text()
    api_send(st, "POST", "/api/v1/namespaces", {"metadata": {"name": AIRFLOW_SA_NAMESPACE}})
    sa_path = f"/api/v1/namespaces/{AIRFLOW_SA_NAMESPACE}/serviceaccounts"
    api_send(st, "POST", sa_path, {"metadata": {"name": AIRFLOW_SA}})
    req = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": 30 * 86400},
    }
    resp = api_send(st, "POST", f"{sa_path}/{AIRFLOW_SA}/token", req, ok_conflict=False)
    token = str(resp["status"]["token"])  # type: ignore[index]
    token_file.write_text(token)
    token_file.chmod(0o600)
    write_client_kubeconfig(st, Path(st.dir) / "airflow.kubeconfig", token)
    return token
