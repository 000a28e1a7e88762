// flowstage web UI: the buttons that act call the REST API from the page (same origin, the sign-in cookie).
(function () {
  "use strict";

  function toast(text, bad) {
    var box = document.getElementById("toast");
    if (!box) return;
    box.textContent = text;
    box.className = "show" + (bad ? " bad" : "");
    clearTimeout(box._t);
    box._t = setTimeout(function () { box.className = ""; }, 6000);
  }

  async function api(method, url, body, type) {
    var init = { method: method, headers: { "Accept": "application/json" }, credentials: "same-origin" };
    if (body !== undefined) {
      init.headers["Content-Type"] = type || "application/json";
      init.body = typeof body === "string" ? body : JSON.stringify(body);
    }
    var answer = await fetch(url, init);
    var data = null;
    try { data = await answer.json(); } catch (e) { data = null; }
    if (!answer.ok) {
      var detail = (data && (data.detail || data.title)) || answer.statusText;
      var error = new Error(detail);
      error.status = answer.status;
      error.data = data;
      throw error;
    }
    return data;
  }

  document.addEventListener("click", async function (event) {
    var button = event.target.closest("[data-post]");
    if (!button) return;
    event.preventDefault();
    if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
    button.disabled = true;
    try {
      var body = button.dataset.body ? JSON.parse(button.dataset.body) : {};
      var data = await api("POST", button.dataset.post, body);
      toast(button.textContent.trim() + ": done");
      if (button.dataset.go) window.location.assign(button.dataset.go);
      else if (button.dataset.reload !== undefined) window.location.reload();
      else document.dispatchEvent(new CustomEvent("flowstage:acted", { detail: data }));
    } catch (error) {
      toast(error.message, true);
    } finally {
      button.disabled = false;
    }
  });

  document.addEventListener("submit", async function (event) {
    var form = event.target;
    if (form.id !== "start-form") return;
    event.preventDefault();
    var variables = {};
    form.querySelectorAll("input[data-json]").forEach(function (input) {
      var text = input.value.trim();
      try { variables[input.name] = text === "" ? null : JSON.parse(text); } catch (e) { variables[input.name] = input.value; }
    });
    var button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      var data = await api("POST", "/api/v1/workflows/" + encodeURIComponent(form.dataset.workflow) + "/runs", { variables: variables });
      window.location.assign("/runs/" + encodeURIComponent(data.id));
    } catch (error) {
      toast(error.message, true);
      button.disabled = false;
    }
  });

  // times are written in UTC by the server; shown in the reader's own time zone
  function localTimes(root) {
    (root || document).querySelectorAll("time[data-local]").forEach(function (t) {
      var d = new Date(t.getAttribute("datetime"));
      if (!isNaN(d)) { t.textContent = d.toLocaleString(); t.title = t.getAttribute("datetime"); }
    });
  }
  document.addEventListener("DOMContentLoaded", function () { localTimes(document); });
  document.addEventListener("htmx:afterSwap", function (e) { localTimes(e.target); });

  window.flowstage = { api: api, toast: toast, localTimes: localTimes };
})();
