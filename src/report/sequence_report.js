// groklab sequence report: the checkpoint explorer (attention patterns, offset profiles, loss).
// No library: plain DOM and SVG.
// Runs after explorer_core.js (`GL`).
"use strict";

(function () {
  const { el, clear, title, lines, W, H } = GL;
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const views = data.views;
  const cps = views.checkpoints;

  // A rows×cols matrix of values in [0, max] on a white→blue scale; labels under the columns and
  // beside the rows when given; a red outline around column `markCol` when given.
  function heat(svg, values, rows, cols, max, rowLabels, colLabels, markCol) {
    clear(svg);
    const left = rowLabels ? 40 : 6, top = 6, bottom = colLabels ? 22 : 6;
    const size = Math.min((W - left - 70) / cols, (H - top - bottom) / rows);
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const v = values[r * cols + c];
        const t = Math.max(0, Math.min(1, v / max));
        const fade = Math.round(255 * (1 - t));
        title(el("rect", { x: left + size * c, y: top + size * r, width: size + 0.3, height: size + 0.3,
          fill: "rgb(" + fade + "," + fade + ",255)" }, svg),
          (rowLabels ? rowLabels[r] : "query " + r) + " → " + (colLabels ? colLabels[c] : "key " + c) +
          ": " + v.toFixed(3));
      }
      if (rowLabels) el("text", { x: left - 4, y: top + size * (r + 0.5) + 3, "text-anchor": "end", class: "tick" }, svg, rowLabels[r]);
    }
    if (colLabels) colLabels.forEach((lab, c) =>
      el("text", { x: left + size * (c + 0.5), y: top + size * rows + 14, "text-anchor": "middle", class: "tick" }, svg, lab));
    if (markCol !== undefined && markCol !== null) {
      el("rect", { x: left + size * markCol, y: top, width: size, height: size * rows, fill: "none",
        stroke: "#d62728", "stroke-width": 1 }, svg);
    }
    el("text", { x: left + size * cols + 8, y: top + 12, class: "tick" }, svg, "max " + max.toPrecision(3));
  }

  const heads = views.n_layers * views.n_heads;
  const headLabels = [...Array(heads).keys()].map((i) => Math.floor(i / views.n_heads) + "." + (i % views.n_heads));
  const t = views.tokens.length;
  const lossSeries = [
    { name: "train", color: "#1f4fd8", pts: data.loss.map((r) => [r[0], r[1]]) },
    { name: "test", color: "#d62728", pts: data.loss.map((r) => [r[0], r[2]]) },
  ];

  function show(i) {
    const c = cps[i];
    const row = data.loss.find((r) => r[0] === c.step);
    document.getElementById("step-label").textContent = "step " + c.step + " (" + (i + 1) + "/" + cps.length + ")" +
      (row ? ": train loss " + row[1].toPrecision(3) + ", test loss " + row[2].toPrecision(3) : "");
    lines(document.getElementById("view-loss"), lossSeries, "step", c.step, 60);
    c.patterns.forEach((p, k) => {
      heat(document.getElementById("view-pat-" + k), p.map((v) => v / 1000), t, t, 1, null, null, views.signal_position);
    });
    if (c.induction_profile.length) {
      const flat = c.induction_profile.flat();
      heat(document.getElementById("view-induction"), flat, heads, views.induction_offsets.length,
        Math.max(...flat, 1e-9), headLabels, views.induction_offsets.map((o) => (o > 0 ? "+" : "") + o));
    }
    const q = c.query_profile.flat();
    heat(document.getElementById("view-query"), q, heads, views.query_offsets.length,
      Math.max(...q, 1e-9), headLabels, views.query_offsets.map((o) => "−" + o));
  }

  const slider = GL.slider(cps.length, show);
  GL.selfTest(slider, cps.map((c) => c.step), () => true);
})();
