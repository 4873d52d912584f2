// The element page's neighbourhood graph (Cytoscape.js): nodes coloured and labelled by health,
// redundancy groups as boxes, a click opens the element. Data from graph.json (same origin).
(function () {
  "use strict";
  var cy_id = function (id) { return "#" + id.replace(/([^A-Za-z0-9_-])/g, "\\$1"); };
  var COLORS = { ok: "#16a34a", at_risk: "#ca8a04", degraded: "#ea580c", down: "#dc2626" };
  document.addEventListener("DOMContentLoaded", function () {
    var box = document.getElementById("graph");
    if (!box || typeof cytoscape === "undefined") return;
    var ink = getComputedStyle(document.body).color;
    var paper = getComputedStyle(document.body).backgroundColor;
    fetch(box.dataset.src, { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (g) {
        var cy = cytoscape({
          container: box,
          elements: g.elements,
          wheelSensitivity: 0.3,
          layout: { name: "breadthfirst", directed: true, roots: g.roots.map(function (r) { return cy_id(r); }).join(","), spacingFactor: 1.0, padding: 12 },
          style: [
            { selector: "node", style: {
              "label": "data(label)", "text-wrap": "wrap", "font-size": 11, "color": ink,
              "text-valign": "bottom", "text-margin-y": 4, "width": 22, "height": 22,
              "background-color": function (n) { return COLORS[n.data("health")] || "#6b7280"; },
              "border-width": 2, "border-color": paper,
              "shape": function (n) {
                var h = n.data("health");
                return h === "down" ? "rectangle" : h === "degraded" ? "triangle" : h === "at_risk" ? "diamond" : "ellipse";
              } } },
            { selector: "node[?focus]", style: { "border-width": 4, "border-color": ink, "width": 30, "height": 30 } },
            { selector: "node[?group]", style: {
              "background-opacity": 0.06, "background-color": ink, "border-style": "dashed", "border-width": 1,
              "border-color": ink, "shape": "round-rectangle", "text-valign": "top", "font-size": 10 } },
            { selector: "node[?more]", style: {
              "background-color": paper, "border-color": ink, "border-width": 1, "border-style": "dotted",
              "shape": "round-rectangle", "width": 60, "height": 18, "text-valign": "center", "text-margin-y": 0 } },
            { selector: "edge", style: {
              "width": 1.5, "line-color": ink, "target-arrow-color": ink, "target-arrow-shape": "triangle",
              "curve-style": "bezier", "opacity": 0.6 } },
            { selector: "edge[?redundant]", style: { "line-style": "dashed" } }
          ]
        });
        cy.on("tap", "node", function (ev) {
          var n = ev.target;
          if (n.data("group") || n.data("focus") || n.data("more")) return;
          window.location.href = box.dataset.prefix + "/elements/" + encodeURIComponent(n.id());
        });
        box.cy = cy;  // for the browser tests
        box.dataset.ready = String(cy.nodes().length);
      });
  });
})();
