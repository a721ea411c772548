// tonrail dashboard: draws the charts described by JSON blocks, after load and after htmx swaps.
// A chart is <canvas data-chart="ID"> plus <script type="application/json" id="ID">{Chart.js
// config: type, data, options}</script>. No inline scripts anywhere (the CSP forbids them).
(function () {
  "use strict";

  function config(id) {
    var source = document.getElementById(id);
    if (!source) return null;
    try { return JSON.parse(source.textContent); } catch (e) { return null; }
  }

  function draw(root) {
    if (!window.Chart) return;
    (root || document).querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var cfg = config(canvas.dataset.chart);
      if (!cfg) return;
      cfg.options = cfg.options || {};
      cfg.options.animation = false;
      cfg.options.maintainAspectRatio = false;
      var existing = window.Chart.getChart(canvas);
      if (existing) {
        existing.data = cfg.data;
        existing.update("none");
      } else {
        new window.Chart(canvas, cfg);
      }
      canvas.dataset.drawn = String(Number(canvas.dataset.drawn || 0) + 1);
    });
  }

  document.addEventListener("DOMContentLoaded", function () { draw(document); });
  document.addEventListener("htmx:afterSettle", function (event) {
    draw(document);
  });
  // Keep the nav badges and banners honest after an action without a full reload.
  window.tonrail = { draw: draw };
})();
