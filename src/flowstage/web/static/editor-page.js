// The editor page: the text is the source (kept exactly as typed); validated on the server as you type.
import { createEditor } from "/static/vendor/editor.js";

const page = document.getElementById("editor-page");
const source = document.getElementById("source");
const validity = document.getElementById("validity");
const problemsList = document.getElementById("problems");
const language = document.getElementById("language");
const save = document.getElementById("save");
let timer = null;
let lastValid = false;

function mediaType() {
  return language.value === "json" ? "application/json" : "application/yaml";
}

async function validate(text) {
  const answer = await fetch("/api/v1/validate", {
    method: "POST", credentials: "same-origin", headers: { "Content-Type": mediaType(), "Accept": "application/json" }, body: text
  });
  const data = await answer.json();
  if (!answer.ok) {
    show([{ line: null, column: null, message: data.detail || answer.statusText, text: data.detail || answer.statusText }]);
    return;
  }
  lastValid = data.valid;
  show(data.problems);
  if (data.valid) window.flowstageGraph.draw(document.getElementById("graph"), data.graph);
}

function show(problems) {
  editor.setProblems(problems.map((p) => ({ line: p.line || 1, col: p.column || null, message: p.message, severity: "error" })));
  problemsList.replaceChildren(...problems.map((p) => {
    const item = document.createElement("li");
    item.textContent = p.text;
    return item;
  }));
  validity.textContent = problems.length ? `${problems.length} problem${problems.length > 1 ? "s" : ""}` : "valid";
  validity.dataset.state = problems.length ? "invalid" : "valid";
  if (save) save.disabled = problems.length > 0;
}

function changed(text) {
  clearTimeout(timer);
  validity.textContent = "checking…";
  validity.dataset.state = "checking";
  timer = setTimeout(() => validate(text), 300);
}

const initial = source.value;
language.value = initial.trimStart().startsWith("{") ? "json" : "yaml";
const editor = createEditor(document.getElementById("editor"), { doc: initial, language: language.value, label: "workflow file", onChange: changed });
page.editor = editor;
language.addEventListener("change", () => { editor.setLanguage(language.value); changed(editor.getText()); });
validate(initial);

if (save) {
  save.addEventListener("click", async () => {
    const text = editor.getText();
    save.disabled = true;
    const answer = await fetch("/api/v1/workflows", {
      method: "POST", credentials: "same-origin", headers: { "Content-Type": mediaType(), "Accept": "application/json" }, body: text
    });
    const data = await answer.json();
    if (answer.ok) {
      window.location.assign(`/workflows/${encodeURIComponent(data.name)}`);
    } else {
      show((data.problems || [data.detail]).map((t) => parseProblem(t)));
      window.flowstage.toast(data.detail || "not deployed", true);
    }
  });
}

function parseProblem(text) {
  const found = /^[^:]*:(\d+)(?::(\d+))?: (.*)$/s.exec(text);
  return found ? { line: Number(found[1]), column: found[2] ? Number(found[2]) : null, message: found[3], text } : { line: null, column: null, message: text, text };
}
