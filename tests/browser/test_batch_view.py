"""The Batch view in headless Chromium, against the real api-server, scheduler and triggerer.

One Airflow stack for every case (``localcluster/airflowstack.py``), with the simple auth manager
holding three users: ``admin``, ``viewer`` (may read every DAG) and ``nobody`` (no role: may read
nothing). While a 50-item group runs on the cluster, the page shows 50 cells whose counts change
as Jobs finish; a failed item shows its log tail; a screenshot is kept in
``tests/browser/artifacts/`` (or ``$BATCHJOB_ARTIFACTS``). Then: the extra links the worker
stored, ``nobody``'s 403 on the page and on its data, and a group whose Jobs were deleted shown
from what its task recorded.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_batchjob.links import view_path
from airflow_batchjob.plugins.batchview import TAB_ROUTE
from airflow_batchjob.plugins.records import AIRFLOW_3_1
from localcluster import cluster as lc
from localcluster.airflowstack import AirflowStack
from tests.browser.cdp import Page, chromium, chromium_binary, until
from tests.stack.helpers import own_namespace

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(chromium_binary() is None, reason="needs Debian's chromium (scripts/setup.sh)"),
]

DAGS = Path(__file__).parent / "dags"
ARTIFACTS = Path(os.environ.get("BATCHJOB_ARTIFACTS", Path(__file__).parent / "artifacts"))
RUN = "browser-1"
# Generous: with the other test lanes beside it on 2 cores, the api-server answered a login in 60 s+.
TIMEOUT = 180
LINK_TEMPLATE = "https://dashboard.example/jobs?ns={namespace}&labels={selector}"


class Env:
    """The stack, its users' passwords, the run's namespace and the gate directory its Pods wait on."""

    def __init__(self, stack: AirflowStack, passwords: dict[str, str], namespace: str, gate: Path) -> None:
        self.stack, self.passwords, self.namespace, self.gate = stack, passwords, namespace, gate
        self.base = f"http://127.0.0.1:{stack.port}"
        self.tokens: dict[str, str] = {}

    def token(self, user: str) -> str:
        """A login as ``user`` (one per user: tokens last a day)."""
        if user not in self.tokens:
            body = json.dumps({"username": user, "password": self.passwords[user]}).encode()
            req = urllib.request.Request(
                f"{self.base}/auth/token", data=body, headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
                self.tokens[user] = str(json.load(r)["access_token"])
        return self.tokens[user]

    def get(self, user: str, path: str) -> tuple[int, Any]:
        req = urllib.request.Request(
            f"{self.base}{path}", headers={"Authorization": f"Bearer {self.token(user)}"}
        )
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
                raw = r.read()
                return r.status, json.loads(
                    raw
                ) if r.headers.get_content_type() == "application/json" else raw
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def call(self, method: str, path: str, body: dict[str, Any]) -> Any:
        req = urllib.request.Request(
            f"{self.base}{path}",
            method=method,
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.token('admin')}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
            return json.load(r)

    def data(self, task_id: str, user: str = "admin") -> tuple[int, Any]:
        return self.get(
            user, view_path("batch_view", RUN, task_id, -1).replace("/dags/", "/api/dags/", 1) + "/batch"
        )

    def ti_state(self, task_id: str) -> str | None:
        rows = self.stack.query(
            "select state from task_instance where dag_id = 'batch_view' and run_id = ? and task_id = ?",
            RUN,
            task_id,
        )
        return rows[0][0] if rows else None

    def browser_login(self, page: Page, user: str) -> None:
        """The session Airflow 3.1+'s UI keeps after a login: its ``_token`` cookie."""
        page.clear_cookies()
        page.set_cookie(self.base, "_token", self.token(user))


@pytest.fixture(scope="module")
def env(local_cluster: lc.State, api_client: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    passwords = {u: secrets.token_urlsafe(12) for u in ("admin", "viewer", "nobody")}
    pwfile = tmp_path_factory.mktemp("auth") / "passwords.json"
    pwfile.write_text(json.dumps(passwords))
    auth = {
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,viewer:viewer,nobody:",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(pwfile),
        "AIRFLOW__BATCHJOB__JOB_LINK_TEMPLATE": LINK_TEMPLATE,
    }
    gate = tmp_path_factory.mktemp("gate")
    with (
        own_namespace(local_cluster, api_client, "bv") as namespace,
        AirflowStack(
            DAGS, env={"BATCHJOB_TEST_NAMESPACE": namespace, "BATCHJOB_TEST_GATE": str(gate), **auth}
        ) as stack,
    ):
        stack.wait_parsed(["batch_view"])
        e = Env(stack, passwords, namespace, gate)
        e.call("PATCH", "/api/v2/dags/batch_view", {"is_paused": False})
        e.call("POST", "/api/v2/dags/batch_view/dagRuns", {"dag_run_id": RUN, "logical_date": None})
        yield e


def test_the_page_follows_a_50_item_group_live(env: Env) -> None:
    url = env.base + view_path("batch_view", RUN, "fifty", -1)
    with chromium() as page:
        env.browser_login(page, "viewer")
        until(lambda: env.ti_state("fifty") in ("running", "deferred"), 300, "the task runs")
        page.navigate(url)
        # Live: every cell is on the page at once, whatever has finished yet.
        page.wait_for(
            "document.body.dataset.source === 'live' "
            "&& document.querySelectorAll('#grid .cell').length === 50",
            120,
            "50 live cells",
        )
        seen: list[tuple[int, str]] = []

        def at(done: int, finished: str) -> Callable[[], bool]:
            def check() -> bool:
                now = page.eval(
                    "[Number(document.querySelector('#counts .total').textContent.split(' ')[0]), "
                    "document.body.dataset.finished]"
                )
                if not seen or seen[-1] != (now[0], now[1]):
                    seen.append((int(now[0]), str(now[1])))
                return seen[-1] == (done, finished)

            return check

        # Every item is held: nothing can be done yet, however slow the page was to open.
        until(at(0, "false"), 60, "0 done while every item is held")
        (env.gate / "first").touch()
        # The first half ends; the second is held, so the page must show 25 done, still live.
        until(at(25, "false"), 600, "25 done, live, while the second half is held")
        page.screenshot(ARTIFACTS / "batch-view-live.png")  # mid-run
        (env.gate / "second").touch()
        until(at(50, "true"), 600, "the task finished (the page stopped polling)")
        assert [d for d, finished in seen if finished == "false"][:1] == [0], seen
        counts = page.eval(
            "Object.fromEntries([...document.querySelectorAll('#counts .count[data-state]')]"
            ".map(e => [e.dataset.state, Number(e.querySelector('b').textContent)]))"
        )
        assert counts["failed"] == 2 and counts["succeeded"] == 48, counts
        # A failed item: its reason, exit code and log tail.
        page.eval("document.querySelector('#failed-only').click()")
        assert page.eval("document.querySelectorAll('#grid .cell').length") == 2
        page.eval("document.querySelector('#grid .cell.failed').click()")
        tail = page.wait_for(
            "(document.querySelector('.log-tail')||{}).textContent?.includes('bad input') "
            "&& document.querySelector('.log-tail').textContent",
            60,
            "the failed item's log tail",
        )
        assert "giving up" in tail
        detail = page.eval("document.querySelector('#detail').textContent")
        assert "exitcode3" in detail.replace(" ", ""), detail
        page.eval("document.querySelector('#failed-only').click()")
        page.wait_for("document.querySelectorAll('#grid .cell').length === 50", 10)
        shot = page.screenshot(ARTIFACTS / "batch-view.png")
        assert shot.stat().st_size > 10_000
    status, data = env.data("fifty")
    assert status == 200 and data["total"] == 50 and data["api_calls"] <= 2, data


def test_extra_links_point_at_the_view_and_the_template(env: Env) -> None:
    def stored() -> Any:
        status, body = env.get("admin", f"/api/v2/dags/batch_view/dagRuns/{RUN}/taskInstances/fifty/links")
        assert status == 200, body
        return body["extra_links"] if body["extra_links"].get("Batch view") else None

    # Stored before execute (not only when the task defers or ends): there once the task started.
    links = until(stored, 300, "the task's extra links")
    assert links["Batch view"].endswith(view_path("batch_view", RUN, "fifty", -1)), links
    assert links["Kubernetes Jobs"].startswith(
        f"https://dashboard.example/jobs?ns={env.namespace}&labels="
    ), links


def test_a_user_without_access_gets_403(env: Env) -> None:
    assert env.data("fifty", user="viewer")[0] == 200
    assert env.data("fifty", user="nobody")[0] == 403
    with chromium() as page:
        env.browser_login(page, "nobody")
        page.navigate(env.base + view_path("batch_view", RUN, "fifty", -1))
        text = page.wait_for("document.body && document.body.innerText", 30)
        # Airflow 3.1+ refuses the page itself; on 3.0 the page is an empty shell whose data call
        # is refused.
        if "403" not in text:
            text = page.wait_for("document.body.dataset.error", 30, "the refused data call")
        assert "403" in text, text


def test_after_the_jobs_are_gone_the_view_shows_what_the_task_recorded(env: Env) -> None:
    until(lambda: env.ti_state("small") == "success", 300, "the small group succeeded")
    status, data = env.data("small")
    assert status == 200 and data["source"] == "recorded", data
    assert [(c["label"], c["state"], c["result"]) for c in data["cells"]] == [
        ("a", "succeeded", "done a"),
        ("b", "succeeded", "done b"),
        ("c", "succeeded", "done c"),
    ]


def test_the_task_instance_page_shows_the_view_in_a_tab(env: Env) -> None:
    if not AIRFLOW_3_1:
        pytest.skip("Airflow 3.0's UI shows no plugin views: the Batch view link opens the page")
    with chromium() as page:
        env.browser_login(page, "viewer")
        page.navigate(f"{env.base}/dags/batch_view/runs/{RUN}/tasks/fifty/plugin/{TAB_ROUTE}")
        frame = "document.querySelector('iframe[src*=\"/batchjob/dags/\"]')"
        try:
            page.wait_for(f"!!{frame}", 240, "the tab's frame")
        except TimeoutError as e:
            seen = page.eval(
                "JSON.stringify([location.href, [...document.querySelectorAll('iframe')].map(f => f.src),"
                " document.body.innerText.slice(0, 800)])"
            )
            raise AssertionError(f"no Batch view frame on the task instance page: {seen}") from e
        cells = page.wait_for(
            f"(() => {{ const d = {frame}.contentDocument;"
            " return d && d.querySelectorAll('#grid .cell').length; })()",
            120,
            "the frame's cells",
        )
        assert cells == 50
        page.screenshot(ARTIFACTS / "batch-view-tab.png")


def test_airflow_plugins_lists_the_view(env: Env) -> None:
    out = subprocess.run(
        [env.stack.airflow, "plugins", "-o", "json"],
        env=env.stack.env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    plugins = {p["name"]: p for p in json.loads(out[out.index("[") :])}
    ours = plugins["batchjob"]
    assert [a["url_prefix"] for a in ours["fastapi_apps"]] == ["/batchjob"]
    views = ours.get("external_views")
    if views is not None:  # Airflow 3.1+: a tab on the task instance page
        assert [(v["name"], v["destination"]) for v in views] == [("Batch view", "task_instance")]
