// groklab in-context regression report: the checkpoint explorer. No library: plain DOM and SVG.
// Runs after explorer_core.js (`GL`).
"use strict";

(function () {
  const { el, clear, title, lines, W, H } = GL;
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const cps = data.checkpoints;

  // An n×n signed matrix as cells on a diverging scale (blue < 0 < red), its own |max|.
  function matrix(svg, values, n, label) {
    clear(svg);
    const size = Math.min(W - 20, H - 40) / n;
    const max = values.reduce((m, v) => Math.max(m, Math.abs(v)), 1e-300);
    values.forEach((v, k) => {
      const t = Math.max(-1, Math.min(1, v / max));
      const fade = Math.round(255 * (1 - Math.abs(t)));
      const fill = t >= 0 ? "rgb(255," + fade + "," + fade + ")" : "rgb(" + fade + "," + fade + ",255)";
      title(el("rect", { x: 10 + size * (k % n), y: 10 + size * Math.floor(k / n), width: size, height: size, fill },
        svg), "[" + Math.floor(k / n) + ", " + (k % n) + "] = " + v);
    });
    el("text", { x: 20 + size * n, y: 24, class: "tick" }, svg, label);
    el("text", { x: 20 + size * n, y: 40, class: "tick" }, svg, "|max| " + max.toPrecision(3));
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

  const slider = GL.slider(cps.length, show);
  GL.selfTest(slider, cps.map((c) => c.step), (id) => !id.startsWith("view-c-"));
})();
