// groklab sequence report: the checkpoint explorer (attention patterns, offset profiles, loss).
// No library: plain DOM and SVG.
"use strict";
window.__reportErrors = [];
window.addEventListener("error", (e) => window.__reportErrors.push(String(e.message)));

(function () {
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const views = data.views;
  const cps = views.checkpoints;
  const NS = "http://www.w3.org/2000/svg";
  const W = 460, H = 260, L = 48, R = 10, T = 12, B = 30;

  function el(tag, attrs, parent, text) {
    const e = document.createElementNS(NS, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    parent.appendChild(e);
    return e;
  }
  function clear(svg) { while (svg.firstChild) svg.removeChild(svg.firstChild); }

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
        el("rect", { x: left + size * c, y: top + size * r, width: size + 0.3, height: size + 0.3,
          fill: "rgb(" + fade + "," + fade + ",255)" }, svg)
          .appendChild(document.createElementNS(NS, "title")).textContent =
          (rowLabels ? rowLabels[r] : "query " + r) + " → " + (colLabels ? colLabels[c] : "key " + c) +
          ": " + v.toFixed(3);
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

  // Lines of (x, y) points, log10 y; a vertical marker at `mark`.
  function lines(svg, series, xLabel, mark) {
    clear(svg);
    const pts = series.flatMap((s) => s.pts).filter((p) => p[1] > 0);
    if (!pts.length) return;
    const ys = pts.map((p) => Math.log10(p[1]));
    const lo = Math.floor(Math.min(...ys) * 4) / 4, hi = Math.ceil(Math.max(...ys) * 4) / 4 + 0.01;
    const x0 = Math.min(...pts.map((p) => p[0])), x1 = Math.max(...pts.map((p) => p[0]));
    const sx = (x) => L + ((x - x0) / Math.max(x1 - x0, 1e-12)) * (W - L - R);
    const sy = (y) => H - B - ((y - lo) / Math.max(hi - lo, 1e-12)) * (H - B - T);
    el("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }, svg);
    el("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }, svg);
    for (let i = 0; i <= 4; i++) {
      const y = lo + ((hi - lo) * i) / 4;
      el("text", { x: L - 4, y: sy(y) + 3, "text-anchor": "end", class: "tick" }, svg, Math.pow(10, y).toPrecision(2));
    }
    el("text", { x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle", class: "tick" }, svg, xLabel);
    series.forEach((s, j) => {
      const d = s.pts.filter((p) => p[1] > 0)
        .map((p, n) => (n ? "L" : "M") + sx(p[0]) + " " + sy(Math.log10(p[1]))).join(" ");
      if (d) el("path", { d, fill: "none", stroke: s.color, "stroke-width": 1.5 }, svg);
      el("text", { x: W - R - 60, y: T + 12 * (j + 1), class: "tick", style: "fill:" + s.color }, svg, s.name);
    });
    el("line", { x1: sx(mark), y1: T, x2: sx(mark), y2: H - B, class: "marker" }, svg);
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
    lines(document.getElementById("view-loss"), lossSeries, "step", c.step);
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

  const slider = document.getElementById("slider");
  slider.max = Math.max(cps.length - 1, 0);
  slider.value = slider.max;
  slider.addEventListener("input", () => show(+slider.value));
  if (cps.length) show(+slider.value);

  // `#selftest`: move the slider like a user and record whether every view redrew.
  if (location.hash === "#selftest") {
    const ids = [...document.querySelectorAll("#explorer svg.view")].map((s) => s.id);
    const problems = [];
    let changed = 0, prev = null;
    for (const i of [0, Math.floor(cps.length / 2), cps.length - 1]) {
      slider.value = i;
      slider.dispatchEvent(new Event("input", { bubbles: true }));
      const label = document.getElementById("step-label").textContent;
      if (!label.startsWith("step " + cps[i].step + " ")) problems.push("label " + label);
      const now = ids.map((id) => document.getElementById(id).innerHTML);
      ids.forEach((id, j) => {
        if (document.getElementById(id).childElementCount < 5) problems.push(id + " empty");
        if (prev && now[j] !== prev[j]) changed++;
      });
      prev = now;
    }
    if (changed === 0) problems.push("no view changed with the slider");
    problems.push(...window.__reportErrors);
    const b = document.body;
    b.setAttribute("data-selftest", problems.length ? "fail: " + problems.join("; ") : "pass");
    b.setAttribute("data-views", String(ids.length));
    b.setAttribute("data-views-changed", String(changed));
    b.setAttribute("data-curve-svgs", String(document.querySelectorAll("#curves svg").length));
  }
})();
