// The Batch view page: polls its JSON endpoint while the task runs and draws the cells.
// Plain JavaScript, no build step: the server renders the page, this file fills it in.
(function () {
  "use strict";
  var REFRESH_MS = 3000;
  var MAX_ROWS = 500; // cells listed in the detail table at most; the grid shows them all
  var body = document.body;
  var dataUrl = location.pathname.replace("/dags/", "/api/dags/") + "/batch" + location.search;
  var logUrl = location.pathname.replace("/dags/", "/api/dags/") + "/log";
  var mapIndex = body.dataset.map;
  var state = { snap: null, selected: null, timer: null, logs: {} };
  var $ = function (id) { return document.getElementById(id); };

  function esc(v) {
    return String(v === undefined || v === null ? "" : v).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  function headers() {
    // Airflow 3.0's UI keeps its token in localStorage and sends it as a header; 3.1+ uses a cookie.
    var token = null;
    try { token = localStorage.getItem("token"); } catch (e) { token = null; }
    return token ? { Authorization: "Bearer " + token } : {};
  }

  function duration(s) {
    if (s === undefined || s === null) return "";
    if (s < 60) return s.toFixed(1) + "s";
    var m = Math.floor(s / 60);
    return m < 60 ? m + "m" + Math.round(s % 60) + "s" : Math.floor(m / 60) + "h" + (m % 60) + "m";
  }

  function visible(cells) {
    var failedOnly = $("failed-only").checked;
    var only = $("state-filter").value;
    var q = $("search").value.trim().toLowerCase();
    return cells.filter(function (c) {
      if (failedOnly && c.state !== "failed") return false;
      if (only && c.state !== only) return false;
      if (!q) return true;
      return [c.label, c.job, c.reason, c.message, c.result, c.key].some(function (v) {
        return v !== undefined && v !== null && String(v).toLowerCase().indexOf(q) >= 0;
      });
    });
  }

  function drawSummary(snap) {
    $("task-state").textContent = "task " + snap.task_state;
    $("source").textContent = snap.source === "live" ? "live from Kubernetes (" + snap.api_calls + " API calls)"
      : snap.source === "recorded" ? "as the task recorded it (its Jobs are gone)" : "no Jobs yet";
    $("as-of").textContent = "as of " + snap.as_of;
    $("bar").style.width = (100 * snap.progress).toFixed(1) + "%";
    var html = ['<span class="count total">' + snap.done + " / " + snap.total + " done</span>"];
    Object.keys(snap.counts).forEach(function (s) {
      html.push('<span class="count ' + s + '" data-state="' + s + '">' + s + " <b>" + snap.counts[s] + "</b></span>");
    });
    $("counts").innerHTML = html.join(" ");
    var select = $("state-filter");
    if (select.options.length === 1) {
      Object.keys(snap.counts).forEach(function (s) { select.add(new Option(s, s)); });
    }
    var err = $("error");
    err.hidden = !snap.error;
    err.textContent = snap.error || "";
  }

  function drawGrid() {
    var snap = state.snap;
    if (!snap) return;
    var cells = visible(snap.cells);
    $("shown").textContent = cells.length + " of " + snap.total + " shown";
    var out = [];
    for (var i = 0; i < cells.length; i++) {
      var c = cells[i];
      var sel = state.selected === c.key ? " selected" : "";
      out.push('<div class="cell ' + c.state + sel + '" role="gridcell" tabindex="0" data-key="' + esc(c.key) +
        '" title="' + esc(c.label + ": " + c.state + (c.seconds !== undefined ? " (" + duration(c.seconds) + ")" : "")) +
        '"></div>');
    }
    $("grid").innerHTML = out.join("");
    drawDetail();
  }

  function row(name, value, cls) {
    if (value === undefined || value === null || value === "") return "";
    return '<tr><th>' + name + '</th><td class="' + (cls || "") + '">' + esc(value) + "</td></tr>";
  }

  function drawDetail() {
    var aside = $("detail");
    var snap = state.snap;
    var c = snap && state.selected !== null ? snap.cells.find(function (x) { return x.key === state.selected; }) : null;
    if (!c) { aside.hidden = true; return; }
    aside.hidden = false;
    var html = ['<h2 class="' + c.state + '">' + esc(c.label) + "</h2><table>",
      row("state", c.state, "state " + c.state), row("Job", c.job), row("Pod", c.pod),
      row("duration", duration(c.seconds)), row("failed Pods", c.failures), row("reason", c.reason),
      row("exit code", c.exit_code), row("message", c.message), row("result", c.result, "result"), "</table>"];
    if (c.pod && (c.state === "failed" || c.state === "retried")) {
      var log = state.logs[c.pod];
      html.push('<h3>log tail of ' + esc(c.pod) + '</h3><pre class="log-tail">' +
        esc(log === undefined ? "loading…" : log) + "</pre>");
      if (log === undefined) fetchLog(c.pod);
    }
    aside.innerHTML = html.join("");
  }

  function fetchLog(pod) {
    state.logs[pod] = undefined;
    var url = logUrl + "?pod=" + encodeURIComponent(pod) + (mapIndex && mapIndex !== "-1" ? "&map_index=" + mapIndex : "");
    fetch(url, { credentials: "same-origin", headers: headers() })
      .then(function (r) { return r.text().then(function (t) { return r.ok ? t : "(" + r.status + ") " + t; }); })
      .then(function (text) { state.logs[pod] = text; drawDetail(); })
      .catch(function (e) { state.logs[pod] = "(could not read the log: " + e + ")"; drawDetail(); });
  }

  function refresh() {
    fetch(dataUrl, { credentials: "same-origin", headers: headers() })
      .then(function (r) {
        if (r.status === 401 || r.status === 403) {
          throw new Error(r.status === 403 ? "403: you may not read this DAG's task instances" : "401: log in to Airflow first");
        }
        if (!r.ok) return r.text().then(function (t) { throw new Error(r.status + ": " + t); });
        return r.json();
      })
      .then(function (snap) {
        state.snap = snap;
        body.dataset.source = snap.source;
        body.dataset.finished = snap.finished ? "true" : "false";
        drawSummary(snap);
        drawGrid();
        body.dataset.refreshes = String(Number(body.dataset.refreshes || 0) + 1);
        if (!snap.finished) state.timer = setTimeout(refresh, REFRESH_MS);
      })
      .catch(function (e) {
        var err = $("error");
        err.hidden = false;
        err.textContent = e.message;
        body.dataset.error = e.message;
        if (!/^40[13]/.test(e.message)) state.timer = setTimeout(refresh, REFRESH_MS * 2);
      });
  }

  $("grid").addEventListener("click", function (ev) {
    var key = ev.target && ev.target.dataset ? ev.target.dataset.key : undefined;
    if (key === undefined) return;
    state.selected = state.selected === key ? null : key;
    drawGrid();
  });
  ["failed-only", "state-filter", "search"].forEach(function (id) {
    $(id).addEventListener("input", drawGrid);
    $(id).addEventListener("change", drawGrid);
  });
  refresh();
})();
