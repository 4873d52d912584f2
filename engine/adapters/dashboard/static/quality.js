// The service-quality page's KQI charts (uPlot): one chart per metric of the chosen scope, one point
// per minute (mean, and the min-max band), with each KQI's target (dashed) and limit (dotted). Data
// from series.json (same origin).
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var box = document.getElementById("charts");
    if (!box || typeof uPlot === "undefined") return;
    var ink = getComputedStyle(document.body).color;
    var grid = "rgba(127, 127, 127, 0.25)";
    fetch(box.dataset.src, { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (data) {
        if (!data.charts.length) {
          box.textContent = "No samples held for this scope now.";
          box.dataset.ready = "0";
          return;
        }
        data.charts.forEach(function (c) {
          var fig = document.createElement("figure");
          var cap = document.createElement("figcaption");
          cap.textContent = c.metric + (c.kqis.length ? " — " + c.kqis.map(function (k) {
            return k.name + ": target " + k.target + (k.limit != null ? ", limit " + k.limit : "") +
              " (" + (k.objective === "max" ? "at most" : "at least") + ")";
          }).join("; ") : "");
          fig.appendChild(cap);
          box.appendChild(fig);
          // the minute's mean, then its lowest and highest, drawn as a band around the mean
          var series = [
            {},
            { label: c.metric + " (mean)", stroke: "#2563eb", width: 2, points: { show: c.t.length < 60 } },
            { label: "min", stroke: "rgba(37, 99, 235, 0.45)", width: 1, points: { show: false } },
            { label: "max", stroke: "rgba(37, 99, 235, 0.45)", width: 1, points: { show: false } }
          ];
          var cols = [c.t, c.v, c.lo, c.hi];
          c.kqis.forEach(function (k) {
            series.push({ label: k.name + " target", stroke: "#ea580c", width: 1.5, dash: [6, 4], points: { show: false } });
            cols.push(c.t.map(function () { return k.target; }));
            if (k.limit != null) {
              series.push({ label: k.name + " limit", stroke: "#dc2626", width: 1.5, dash: [2, 3], points: { show: false } });
              cols.push(c.t.map(function () { return k.limit; }));
            }
          });
          var axis = { stroke: ink, grid: { stroke: grid }, ticks: { stroke: grid } };
          new uPlot({
            width: Math.max(320, box.clientWidth - 8), height: 220, series: series,
            bands: [{ series: [3, 2], fill: "rgba(37, 99, 235, 0.15)" }],
            axes: [axis, axis], legend: { live: true }
          }, cols, fig);
        });
        box.dataset.ready = String(data.charts.length);
      });
  });
})();
