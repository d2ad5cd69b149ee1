"""One container's log, read through the apiserver's log endpoint for a wait's live logs.

``triggers/podlogs.py`` decides which containers to read, when to resume and what to print; this
module makes the request. An error answer comes out as
:class:`~airflow_batchjob.exceptions.KubernetesCallError` with its status, so the trigger side
tells a container not started yet (400, 404) from a dropped connection without importing the
Kubernetes client.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from airflow_batchjob.exceptions import KubernetesCallError

__all__ = ["ApiClient", "read_pod_log"]


async def read_pod_log(
    api: ApiClient,
    namespace: str,
    pod: str,
    container: str,
    on_line: Callable[[bytes], None],
    *,
    follow: bool,
    tail: int | None = None,
    since: str | None = None,
) -> None:
    """Read a container's log with timestamps, each line (without its newline) to ``on_line``.

    With ``follow``, returns when the apiserver ends the stream (the container ended), and raises
    what the connection raises when it drops. ``tail``: only the last lines; ``since``: from this
    RFC 3339 second on. An error answer raises ``KubernetesCallError``.
    """
    # The API's sinceTime is not in the generated client's signature: the request is built here
    # (the same one ``read_namespaced_pod_log`` sends, plus sinceTime).
    query: list[tuple[str, Any]] = [
        ("container", container),
        ("timestamps", "true"),
        ("follow", "true" if follow else "false"),
    ]
    if tail is not None:
        query.append(("tailLines", tail))
    if since is not None:
        query.append(("sinceTime", since))
    try:
        resp: Any = await api.call_api(
            "/api/v1/namespaces/{namespace}/pods/{name}/log",
            "GET",
            {"namespace": namespace, "name": pod},
            query,
            {"Accept": "application/json"},  # what the generated client sends; the log is text
            auth_settings=["BearerToken"],
            _preload_content=False,
            _return_http_data_only=True,
        )
    except ApiException as e:  # no answer at all (the client's status 0), or one it refused
        raise KubernetesCallError(e.status, e.reason) from e
    try:
        if resp.status >= 400:  # unread (_preload_content=False): the client does not check it
            raise KubernetesCallError(resp.status, resp.reason)
        pending = b""
        async for chunk in resp.content.iter_any():
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                on_line(raw)
        if pending:
            on_line(pending)
    finally:
        resp.release()
