// groklab in-context regression report: the checkpoint explorer. No library: plain DOM and SVG.
"use strict";
window.__reportErrors = [];
window.addEventListener("error", (e) => window.__reportErrors.push(String(e.message)));

(function () {
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const cps = data.checkpoints;
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

  // An n×n signed matrix as cells on a diverging scale (blue < 0 < red), its own |max|.
  function matrix(svg, values, n, label) {
    clear(svg);
    const size = Math.min(W - 20, H - 40) / n;
    const max = values.reduce((m, v) => Math.max(m, Math.abs(v)), 1e-300);
    values.forEach((v, k) => {
      const t = Math.max(-1, Math.min(1, v / max));
      const fade = Math.round(255 * (1 - Math.abs(t)));
      const fill = t >= 0 ? "rgb(255," + fade + "," + fade + ")" : "rgb(" + fade + "," + fade + ",255)";
      el("rect", { x: 10 + size * (k % n), y: 10 + size * Math.floor(k / n), width: size, height: size, fill },
        svg).appendChild(document.createElementNS(NS, "title")).textContent =
        "[" + Math.floor(k / n) + ", " + (k % n) + "] = " + v;
    });
    el("text", { x: 20 + size * n, y: 24, class: "tick" }, svg, label);
    el("text", { x: 20 + size * n, y: 40, class: "tick" }, svg, "|max| " + max.toPrecision(3));
  }

  // Lines of (x, y) points, log10 y; a vertical marker at `mark` when given.
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
      el("text", { x: W - R - 110, y: T + 12 * (j + 1), class: "tick", style: "fill:" + s.color }, svg, s.name);
    });
    if (mark !== undefined) {
      el("line", { x1: sx(mark), y1: T, x2: sx(mark), y2: H - B, class: "marker" }, svg);
    }
  }

  const COLORS = ["#222222", "#d62728", "#1f4fd8", "#2ca02c"];
  const refLines = data.references.map((r, i) => ({
    name: r.name + " " + r.loss.toFixed(4), color: COLORS[(i + 1) % COLORS.length],
    pts: [[cps[0].step, r.loss], [cps[cps.length - 1].step, r.loss]],
  }));
  const lossSeries = [{ name: "trained", color: COLORS[0], pts: cps.map((c) => [c.step, c.test_loss]) }]
    .concat(refLines);
  const heads = cps.length ? cps[0].qk.length : 0;
  const e = data.e;
  matrix(document.getElementById("view-c-qk"), data.construction_qk, e, data.construction + ": W_Q W_Kᵀ");
  matrix(document.getElementById("view-c-vp"), data.construction_vp, e, data.construction + ": W_V W_P");

  function show(i) {
    const c = cps[i];
    document.getElementById("step-label").textContent =
      "step " + c.step + " (" + (i + 1) + "/" + cps.length + "): loss " + c.test_loss.toFixed(4) +
      (c.model_cos === null ? "" : ", model cos " + c.model_cos.toFixed(4)) +
      (c.preds_diff === null ? "" : ", preds diff " + c.preds_diff.toFixed(4));
    lines(document.getElementById("view-loss"), lossSeries, "step", c.step);
    for (let h = 0; h < heads; h++) {
      matrix(document.getElementById("view-qk-" + h), c.qk[h], e, "head " + h + ": W_Q W_Kᵀ");
      matrix(document.getElementById("view-vp-" + h), c.vp[h], e, "head " + h + ": W_V W_P");
    }
    const interp = document.getElementById("view-interp");
    if (interp) {
      lines(interp, [
        { name: "step " + c.step, color: COLORS[1], pts: data.alphas.map((a, k) => [a, c.interp[k]]) },
        { name: "last step", color: "#999999", pts: data.alphas.map((a, k) => [a, cps[cps.length - 1].interp[k]]) },
      ], "α (0: construction, 1: trained)");
    }
  }

  const slider = document.getElementById("slider");
  slider.max = Math.max(cps.length - 1, 0);
  slider.value = slider.max;
  slider.addEventListener("input", () => show(+slider.value));
  if (cps.length) show(+slider.value);

  // `#selftest`: move the slider like a user and record whether every view redrew.
  if (location.hash === "#selftest") {
    const ids = [...document.querySelectorAll("#explorer svg.view")].map((s) => s.id)
      .filter((id) => !id.startsWith("view-c-"));
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
