// The live run: its server-sent events move the graph and refresh the status, the task table and the timeline.
(function () {
  "use strict";
  var root, runId, cy, stream, refreshTimer, logCursor = 0, following = true, logTimer, selected = null;

  function refreshTasks() {
    if (refreshTimer) return;
    refreshTimer = setTimeout(function () {
      refreshTimer = null;
      var box = document.getElementById("run-tasks");
      if (window.htmx && box) window.htmx.trigger(box, "refresh");
      if (selected) showTask(selected);
    }, 250);
  }

  function showTask(name) {
    selected = name;
    var panel = document.getElementById("task-detail");
    fetch("/runs/" + encodeURIComponent(runId) + "/tasks/" + encodeURIComponent(name), { credentials: "same-origin" })
      .then(function (r) { return r.text(); })
      .then(function (html) { panel.innerHTML = html; if (window.flowstage) window.flowstage.localTimes(panel); });
  }

  function setFinal(status) {
    root.dataset.final = "true";
    root.dataset.status = status;
    if (stream) { stream.close(); stream = null; }
    refreshTasks();
    fetchLogs();
  }

  function connect() {
    stream = new EventSource("/api/v1/runs/" + encodeURIComponent(runId) + "/events");
    stream.addEventListener("snapshot", function (e) {
      var record = JSON.parse(e.data);
      record.tasks.forEach(function (t) { window.flowstageGraph.setStatus(cy, t.name, t.status); });
      if (record.status !== "running") setFinal(record.status);
    });
    stream.addEventListener("task_status", function (e) {
      var ev = JSON.parse(e.data);
      if (ev.task && ev.status) window.flowstageGraph.setStatus(cy, ev.task, ev.status);
      refreshTasks();
    });
    ["attempt_updated", "run_resumed", "run_variables", "cancel_requested"].forEach(function (kind) {
      stream.addEventListener(kind, refreshTasks);
    });
    stream.addEventListener("run_finished", function (e) { setFinal(JSON.parse(e.data).status); });
  }

  // ---- logs: a minimum level, a task, a search; follow pauses while the reader scrolls up
  function logParams() {
    var form = document.getElementById("log-filters");
    var p = new URLSearchParams();
    p.set("level", form.level.value);
    if (form.task.value) p.set("task", form.task.value);
    if (form.q.value.trim()) p.set("q", form.q.value.trim());
    return p;
  }

  function atBottom(box) { return box.scrollHeight - box.scrollTop - box.clientHeight < 24; }

  async function fetchLogs() {
    var box = document.getElementById("logs");
    var params = logParams();
    params.set("after", String(logCursor));
    params.set("limit", "1000");
    var answer = await fetch("/api/v1/runs/" + encodeURIComponent(runId) + "/logs?" + params.toString(), { credentials: "same-origin" });
    if (!answer.ok) return;
    var page = await answer.json();
    var stick = following && atBottom(box);
    var fragment = document.createDocumentFragment();
    page.items.forEach(function (line) {
      var span = document.createElement("span");
      span.className = "l-" + line.level;
      span.textContent = (line.at || "").slice(11, 23) + " " + line.level.toUpperCase().padEnd(8) + " " +
        (line.task ? line.task + "#" + line.attempt : "run") + ": " + line.message + "\n";
      fragment.appendChild(span);
    });
    box.appendChild(fragment);
    logCursor = page.after;
    if (stick || box.dataset.opened !== "true") box.scrollTop = box.scrollHeight;
    box.dataset.opened = "true";
    box.dataset.lines = String(box.querySelectorAll("span").length);
    if (page.next) return fetchLogs();
  }

  function resetLogs() {
    var box = document.getElementById("logs");
    box.textContent = "";
    box.dataset.opened = "false";
    logCursor = 0;
    var raw = document.getElementById("raw-logs");
    var p = logParams(); p.delete("q");
    raw.href = "/runs/" + encodeURIComponent(runId) + "/logs.txt?" + p.toString();
    fetchLogs();
  }

  function followLoop() {
    clearTimeout(logTimer);
    var form = document.getElementById("log-filters");
    var state = document.getElementById("logs-state");
    var box = document.getElementById("logs");
    if (form.follow.checked && root.dataset.final !== "true") {
      following = true;
      state.textContent = atBottom(box) ? "following" : "paused: scrolled up (scroll to the end to follow again)";
      if (atBottom(box)) fetchLogs();
    } else {
      following = false;
      state.textContent = root.dataset.final === "true" ? "the run ended" : "not following";
    }
    logTimer = setTimeout(followLoop, 1000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    root = document.getElementById("run");
    if (!root) return;
    runId = root.dataset.run;
    cy = window.flowstageGraph.draw(document.getElementById("graph"), JSON.parse(document.getElementById("graph-data").textContent), showTask);
    document.addEventListener("click", function (e) {
      var link = e.target.closest("[data-task-link]");
      if (link) { e.preventDefault(); showTask(link.dataset.taskLink); }
    });
    document.addEventListener("htmx:afterSwap", function (e) {
      var notes = e.target.querySelector && e.target.querySelector("script.graph-notes");
      if (notes) window.flowstageGraph.setNotes(cy, JSON.parse(notes.textContent));
    });
    document.addEventListener("flowstage:acted", function () {
      refreshTasks();
      if (!stream) { root.dataset.final = "false"; connect(); }
    });
    var form = document.getElementById("log-filters");
    form.addEventListener("change", function (e) { if (e.target.name !== "follow") resetLogs(); });
    form.q.addEventListener("input", function () { clearTimeout(form._t); form._t = setTimeout(resetLogs, 300); });
    form.addEventListener("submit", function (e) { e.preventDefault(); });
    resetLogs();
    followLoop();
    connect();
  });
})();
