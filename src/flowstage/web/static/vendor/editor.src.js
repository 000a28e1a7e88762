// The workflow editor: CodeMirror 6 with YAML and JSON, and problems shown as lint diagnostics.
// Built into editor.js (one self-contained ES module) as BUILD.md says; edit this file, not editor.js.
//
//   import {createEditor} from "./editor.js";
//   const editor = createEditor(parent, {doc, language: "yaml", onChange: (text) => ..., label: "Workflow"});
//   editor.setProblems([{line: 2, col: 3, message: "unknown key", severity: "error"}]);
//
// onChange is called with the whole text after each edit made in the editor (typing, paste, undo),
// not after setText. Problems are 1-based; a line past the end is clamped to the last line, a
// column past the end of its line to the line's end; a problem with no col marks its whole line.
// Problems follow the text as it is edited and are cleared by setText and by setProblems([]).

import { EditorState, Compartment, Annotation } from "@codemirror/state";
import { EditorView } from "@codemirror/view";
import { basicSetup } from "codemirror";
import { yaml } from "@codemirror/lang-yaml";
import { json } from "@codemirror/lang-json";
import { setDiagnostics, lintGutter } from "@codemirror/lint";

const LANGUAGES = { yaml, json };
const SEVERITIES = { error: "error", warning: "warning", warn: "warning", info: "info", hint: "hint" };
const fromSetText = Annotation.define();

function languageSupport(name) {
  const make = LANGUAGES[name];
  if (!make) throw new Error(`unknown editor language ${JSON.stringify(name)}: use "yaml" or "json"`);
  return make();
}

function clamp(value, low, high) {
  return Math.min(Math.max(value, low), high);
}

// One problem as a CodeMirror diagnostic: a column marks the word (the run of non-space
// characters) that starts there, at least one character when the line has one.
export function toDiagnostic(doc, problem) {
  const lineNo = clamp(Math.trunc(Number(problem.line) || 1), 1, doc.lines);
  const line = doc.line(lineNo);
  const severity = SEVERITIES[String(problem.severity || "error").toLowerCase()] || "error";
  const message = String(problem.message ?? "");
  if (problem.col === undefined || problem.col === null) {
    return { from: line.from, to: line.to, severity, message };
  }
  const offset = clamp(Math.trunc(Number(problem.col) || 1) - 1, 0, line.length);
  let from = line.from + offset;
  if (from === line.to && line.length > 0) from -= 1;
  let to = from;
  const text = line.text;
  while (to < line.to && !/\s/.test(text[to - line.from])) to += 1;
  if (to === from && from < line.to) to += 1;
  return { from, to, severity, message };
}

export function createEditor(parent, { doc = "", language = "yaml", onChange, label } = {}) {
  const languageSlot = new Compartment();
  const extensions = [
    basicSetup,
    lintGutter(),
    languageSlot.of(languageSupport(language)),
    EditorView.updateListener.of((update) => {
      if (!onChange || !update.docChanged) return;
      if (update.transactions.every((tr) => !tr.docChanged || tr.annotation(fromSetText))) return;
      onChange(update.state.doc.toString());
    }),
  ];
  if (label) extensions.push(EditorView.contentAttributes.of({ "aria-label": String(label) }));
  const view = new EditorView({ parent, state: EditorState.create({ doc: String(doc), extensions }) });

  return {
    view,
    getText() {
      return view.state.doc.toString();
    },
    setText(text) {
      text = String(text);
      const spec = setDiagnostics(view.state, []);
      if (text !== view.state.doc.toString()) {
        spec.changes = { from: 0, to: view.state.doc.length, insert: text };
        spec.annotations = fromSetText.of(true);
      }
      view.dispatch(spec);
    },
    setLanguage(name) {
      view.dispatch({ effects: languageSlot.reconfigure(languageSupport(name)) });
    },
    setProblems(problems) {
      const doc = view.state.doc;
      const diagnostics = (problems || []).map((problem) => toDiagnostic(doc, problem));
      view.dispatch(setDiagnostics(view.state, diagnostics));
    },
    focus() {
      view.focus();
    },
    destroy() {
      view.destroy();
    },
  };
}
