// The graph island: draws the elements the server laid out (preset positions; no layout runs here).
(function () {
  "use strict";
  var COLORS = {
    succeeded: "#1b5e20", failed: "#b71c1c", timed_out: "#a83200", skipped: "#5f5f5f", cancelled: "#5d4037",
    running: "#0d47a1", retrying: "#f9a825", pending: "#e0e0e0", interrupted: "#6a1b9a"
  };
  var DARK_TEXT = { pending: true, retrying: true };
  var EDGE = { success: "#1b5e20", failure: "#b71c1c", completion: "#4a4a4a", skipped: "#5f5f5f", passed: "#0d47a1" };

  function label(data) {
    var text = data.label;
    if (data.any) text = "∨ " + text;
    if (data.copies) text += " ×" + data.copies;
    if (data.note) text += "\n" + data.note;
    if (data.counts && Object.keys(data.counts).length) {
      text += "\n" + Object.keys(data.counts).map(function (k) { return data.counts[k] + " " + k; }).join(", ");
    }
    return text;
  }

  function style() {
    var rules = [
      { selector: "node.task", style: {
        shape: "round-rectangle", width: 170, height: 40, "background-color": "#ffffff", "border-width": 2, "border-color": "#5f5f5f",
        label: function (n) { return label(n.data()); }, "text-valign": "center", "text-halign": "center", "font-size": 12,
        "text-wrap": "wrap", "text-max-width": 160, "line-height": 1.2, color: "#111" } },
      { selector: "node.stage", style: {
        shape: "round-rectangle", "background-color": "#eef3f9", "background-opacity": 1, "border-width": 1, "border-color": "#9fb3c8",
        label: function (n) { return label(n.data()); }, "text-valign": "top", "text-halign": "center", "font-size": 13, "font-weight": 600,
        color: "#102a43", "text-wrap": "wrap", padding: 14 } },
      { selector: "node.stage.collapsed", style: { width: 190, height: 70, "text-valign": "center" } },
      { selector: "node.selected", style: { "border-width": 4, "border-color": "#ff9800" } },
      { selector: "edge", style: {
        width: 2, "curve-style": "bezier", "target-arrow-shape": "triangle", "line-color": "#888", "target-arrow-color": "#888",
        label: "data(condition)", "font-size": 10, "text-background-color": "#fff", "text-background-opacity": 0.9, "text-background-padding": 2, color: "#333" } },
      { selector: "edge.stage-edge", style: { "line-style": "dashed", label: "passed", width: 3 } }
    ];
    Object.keys(EDGE).forEach(function (c) {
      rules.push({ selector: "edge." + c, style: { "line-color": EDGE[c], "target-arrow-color": EDGE[c] } });
    });
    Object.keys(COLORS).forEach(function (s) {
      rules.push({ selector: "node.task." + s + ", node.stage.collapsed." + s, style: {
        "background-color": COLORS[s], "border-color": COLORS[s], color: DARK_TEXT[s] ? "#111" : "#fff" } });
    });
    return rules;
  }

  function draw(container, data, onTap) {
    if (!container || !window.cytoscape) return null;
    if (container._cy) container._cy.destroy();
    var cy = window.cytoscape({
      container: container,
      elements: { nodes: data.nodes, edges: data.edges },
      layout: { name: "preset", fit: true, padding: 24 },
      style: style(),
      wheelSensitivity: 0.3,
      maxZoom: 1.4,
      minZoom: 0.05,
      boxSelectionEnabled: false,
      autoungrabify: true
    });
    container._cy = cy;
    container.dataset.ready = "true";
    container.dataset.nodes = String(cy.nodes().length);
    if (onTap) {
      cy.on("tap", "node.task", function (event) {
        cy.nodes().removeClass("selected");
        event.target.addClass("selected");
        onTap(event.target.id());
      });
    }
    return cy;
  }

  function setStatus(cy, task, status) {
    if (!cy) return false;
    var node = cy.getElementById(task);
    if (!node || node.empty() || !node.hasClass("task")) return false;
    Object.keys(COLORS).forEach(function (s) { node.removeClass(s); });
    node.addClass(status);
    node.data("status", status);
    return true;
  }

  function setNotes(cy, notes) {
    if (!cy) return;
    Object.keys(notes).forEach(function (task) {
      var node = cy.getElementById(task);
      if (node && !node.empty() && node.hasClass("task")) node.data("note", notes[task]);
    });
  }

  window.flowstageGraph = { draw: draw, setStatus: setStatus, setNotes: setNotes };

  document.addEventListener("DOMContentLoaded", function () {
    var container = document.getElementById("graph");
    var source = document.getElementById("graph-data");
    if (!container || !source || document.getElementById("run")) return; // the run page draws its own
    draw(container, JSON.parse(source.textContent));
  });
})();
