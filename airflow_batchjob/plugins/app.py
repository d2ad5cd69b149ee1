"""The Batch view's FastAPI app, mounted by Airflow's api-server at ``/batchjob``.

Routes (below the mount):

- ``GET /dags/{dag_id}/runs/{run_id}/tasks/{task_id}?map_index=N``: the page (server-rendered
  HTML, one script and one stylesheet from ``static/``);
- ``GET /api/dags/.../tasks/{task_id}/batch``: the picture as JSON, polled by the page every few
  seconds while the task runs: two list calls to the apiserver per refresh, from its watch cache
  (``hooks/batchview.py``), whatever the batch's size; afterwards what the task recorded;
- ``GET /api/dags/.../tasks/{task_id}/log?pod=NAME``: a failed Pod's log tail, when a user opens it.

Who may look: Airflow's own FastAPI dependency ``requires_access_dag("GET", TASK_INSTANCE)`` on
every data route, so the deployment's auth manager decides, per DAG (403 otherwise). On Airflow
3.1+ the page itself is checked too (the UI's session cookie comes with it); Airflow 3.0's UI keeps
its token in the browser's storage and sends it only with API calls, so there the page is an
empty shell and its data calls carry the token.
"""

from __future__ import annotations

import html
import re
import time
from importlib import resources
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response

from airflow_batchjob.core.batchview import live_cells, merge_results, recorded_cells, snapshot
from airflow_batchjob.core.results import main_container
from airflow_batchjob.hooks.batchview import BatchViewReader
from airflow_batchjob.links import URL_PREFIX, VIEW_XCOM
from airflow_batchjob.plugins.records import AIRFLOW_3_1, read_records

TASK = "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}"
LOG_LINES = 50
STATIC = {"batchview.js": "text/javascript", "batchview.css": "text/css"}


def _may_read_task_instances() -> Any:
    """Airflow's dependency: the caller's auth manager allows GET on this DAG's task instances."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import requires_access_dag

    return Depends(requires_access_dag(method="GET", access_entity=DagAccessEntity.TASK_INSTANCE))


def _index(map_index: str) -> int:
    """The map index; -1 for an unmapped task, whose tab URL Airflow's UI leaves as the literal
    ``{MAP_INDEX}`` (it fills the placeholder only on a mapped task's page)."""
    return int(map_index) if re.fullmatch(r"-?[0-9]{1,9}", map_index) else -1


def _page(dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
    e = html.escape
    mapped = f" [{map_index}]" if map_index >= 0 else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Batch view: {e(dag_id)}.{e(task_id)}{mapped}</title>
<link rel="stylesheet" href="{URL_PREFIX}/static/batchview.css">
</head>
<body data-dag="{e(dag_id)}" data-run="{e(run_id)}" data-task="{e(task_id)}" data-map="{map_index}">
<header>
  <h1>{e(dag_id)} &rsaquo; {e(task_id)}{mapped}</h1>
  <div class="sub">run {e(run_id)} &middot; <span id="task-state">…</span> &middot;
    <span id="source"></span> &middot; <span id="as-of"></span></div>
</header>
<section id="summary">
  <div class="progress"><div id="bar"></div></div>
  <div id="counts"></div>
</section>
<section id="controls">
  <label><input type="checkbox" id="failed-only"> failed only</label>
  <select id="state-filter"><option value="">every state</option></select>
  <input type="search" id="search" placeholder="search items, Jobs, reasons">
  <span id="shown"></span>
</section>
<div id="error" hidden></div>
<main>
  <div id="grid" role="grid" aria-label="cells"></div>
  <aside id="detail" hidden></aside>
</main>
<script src="{URL_PREFIX}/static/batchview.js"></script>
</body></html>
"""


def create_app() -> FastAPI:
    app = FastAPI(title="airflow-batchjob Batch view", docs_url=None, redoc_url=None, openapi_url=None)
    page_deps = [_may_read_task_instances()] if AIRFLOW_3_1 else []

    @app.exception_handler(HTTPException)
    async def refused(request: Request, exc: HTTPException) -> Response:
        if request.url.path.startswith(f"{URL_PREFIX}/api/") or "/api/" in request.url.path:
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
        text = "You may not read this DAG's task instances." if exc.status_code == 403 else str(exc.detail)
        code = exc.status_code
        body = f"<!doctype html><title>{code}</title><h1>{code}</h1><p>{html.escape(text)}</p>"
        return HTMLResponse(body, status_code=code)

    @app.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in STATIC:
            raise HTTPException(404, "no such file")
        text = resources.files("airflow_batchjob.plugins").joinpath("static", name).read_text()
        return Response(text, media_type=STATIC[name], headers={"Cache-Control": "max-age=300"})

    @app.get(TASK, response_class=HTMLResponse, dependencies=page_deps)
    def page(dag_id: str, run_id: str, task_id: str, map_index: str = Query("-1")) -> HTMLResponse:
        return HTMLResponse(_page(dag_id, run_id, task_id, _index(map_index)))

    @app.get(f"/api{TASK}/batch", dependencies=[_may_read_task_instances()])
    def batch(dag_id: str, run_id: str, task_id: str, map_index: str = Query("-1")) -> dict[str, Any]:
        t0 = time.monotonic()
        rec = read_records(dag_id, run_id, task_id, _index(map_index))
        if rec.task_state is None:
            raise HTTPException(404, "no such task instance")
        ref, recorded = rec.xcoms.get(VIEW_XCOM), recorded_cells(rec.xcoms.get("return_value"))
        now, live, error, calls = time.time(), [], None, 0
        if isinstance(ref, dict) and ref.get("namespace"):
            reader = BatchViewReader(str(ref.get("conn") or "kubernetes_default"))
            try:
                jobs = reader.jobs(ref["namespace"], ref.get("selector"), ref.get("names"))
                if jobs:
                    names = [j["metadata"]["name"] for j in jobs]
                    live = live_cells(
                        jobs, reader.unfinished_pods(ref["namespace"], ref.get("selector"), names), now
                    )
            except Exception as e:  # the view says so; the task is not affected
                error = f"could not read the Jobs from Kubernetes: {e}"
            calls = reader.calls
        if live:
            merge_results(live, recorded)
        cells, source = (live, "live") if live else (recorded, "recorded") if recorded else ([], "none")
        snap = snapshot(cells, source, now, finished=rec.finished)
        snap.update(
            task_state=rec.task_state,
            pattern=(ref or {}).get("pattern"),
            namespace=(ref or {}).get("namespace"),
            selector=(ref or {}).get("selector"),
            api_calls=calls,
            error=error,
            server_ms=round((time.monotonic() - t0) * 1000, 1),
        )
        return snap

    @app.get(f"/api{TASK}/log", response_class=PlainTextResponse, dependencies=[_may_read_task_instances()])
    def log(dag_id: str, run_id: str, task_id: str, pod: str, map_index: str = Query("-1")) -> str:
        ref = read_records(dag_id, run_id, task_id, _index(map_index)).xcoms.get(VIEW_XCOM)
        if not isinstance(ref, dict) or not ref.get("namespace"):
            raise HTTPException(404, "this task instance recorded no Jobs")
        reader = BatchViewReader(str(ref.get("conn") or "kubernetes_default"))
        namespace = ref["namespace"]
        found = reader.pod(namespace, pod)
        jobs = {j["metadata"]["name"] for j in reader.jobs(namespace, ref.get("selector"), ref.get("names"))}
        labels = ((found or {}).get("metadata") or {}).get("labels") or {}
        if found is None or labels.get("batch.kubernetes.io/job-name") not in jobs:
            raise HTTPException(404, f"no Pod {pod!r} of this task instance's Jobs")  # none of ours
        return (
            reader.log_tail(namespace, pod, main_container(found), LOG_LINES) or "(the log is empty or gone)"
        )

    return app
