// groklab report: the checkpoint explorer. No library: plain DOM and SVG. Runs after
// explorer_core.js (`GL`).
"use strict";

(function () {
  const { el, clear } = GL;
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const cps = data.checkpoints;
  const keys = new Set(data.key_freqs);
  const NS = "http://www.w3.org/2000/svg";
  const W = 460, H = 260, L = 48, R = 10, T = 12, B = 30;
  const COLORS = { train: "#1f4fd8", test: "#d62728", restricted: "#2ca02c", excluded: "#ff7f0e" };

  const fmt = (v) => (Math.abs(v) >= 100 || v === 0 ? v.toFixed(0) : v.toPrecision(2));

  // Linear y axis from 0 to yMax, x from x0 to x1; returns coordinate maps.
  function frame(svg, x0, x1, yMax, xLabel) {
    const sx = (x) => L + ((x - x0) / Math.max(x1 - x0, 1e-12)) * (W - L - R);
    const sy = (y) => H - B - (y / Math.max(yMax, 1e-12)) * (H - B - T);
    el("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }, svg);
    el("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }, svg);
    for (let i = 0; i <= 4; i++) {
      const y = (yMax * i) / 4;
      el("text", { x: L - 4, y: sy(y) + 3, "text-anchor": "end", class: "tick" }, svg, fmt(y));
    }
    el("text", { x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle", class: "tick" }, svg, xLabel);
    return { sx, sy };
  }

  // Bars over frequencies 1..n-1 of `values` (index = frequency); key frequencies highlighted.
  function bars(svg, values, yMax, xLabel) {
    clear(svg);
    const n = values.length;
    const { sx, sy } = frame(svg, 0.5, n - 0.5, yMax, xLabel);
    const w = Math.max((W - L - R) / n - 1, 1);
    for (let k = 1; k < n; k++) {
      const v = values[k] || 0;
      el("rect", { x: sx(k) - w / 2, y: sy(v), width: w, height: Math.max(sy(0) - sy(v), 0),
        class: keys.has(k) ? "bar key" : "bar" }, svg).appendChild(
        document.createElementNS(NS, "title")).textContent = "k = " + k + ": " + v;
      if (k % 10 === 0) el("text", { x: sx(k), y: H - B + 12, "text-anchor": "middle", class: "tick" }, svg, k);
    }
  }

  const maxOf = (f) => cps.reduce((m, c) => Math.max(m, ...(f(c) || [0]).slice(1).map((v) => v || 0)), 1e-12);
  const embedMax = maxOf((c) => c.embed);
  const wlMax = maxOf((c) => c.w_l);
  const nFreq = cps.length ? cps[0].embed.length : 0;
  const clusterArray = (c) => {
    const a = new Array(nFreq).fill(0);
    if (c.clusters) for (const k in c.clusters.sizes) a[+k] = c.clusters.sizes[k];
    return a;
  };
  const clusterMax = maxOf(clusterArray);

  function drawLoss(svg, i) {
    clear(svg);
    const logs = (v) => (v > 0 ? Math.log10(v) : null);
    const series = ["train", "test", "restricted", "excluded"].map((name) => ({
      name, pts: cps.map((c) => [c.step, logs(c[name === "train" || name === "test" ? "loss_" + name : name])]),
    }));
    const ys = series.flatMap((s) => s.pts.map((p) => p[1]).filter((y) => y !== null));
    const lo = Math.floor(Math.min(...ys, 0)), hi = Math.ceil(Math.max(...ys, 0));
    const x1 = cps[cps.length - 1].step;
    const sx = (x) => L + (x / Math.max(x1, 1)) * (W - L - R);
    const sy = (y) => H - B - ((y - lo) / Math.max(hi - lo, 1)) * (H - B - T);
    el("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }, svg);
    el("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }, svg);
    for (let y = lo; y <= hi; y += Math.max(1, Math.ceil((hi - lo) / 6)))
      el("text", { x: L - 4, y: sy(y) + 3, "text-anchor": "end", class: "tick" }, svg, "1e" + y);
    el("text", { x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle", class: "tick" }, svg, "step");
    series.forEach((s, j) => {
      const d = s.pts.filter((p) => p[1] !== null).map((p, n) => (n ? "L" : "M") + sx(p[0]) + " " + sy(p[1])).join(" ");
      if (d) el("path", { d, fill: "none", stroke: COLORS[s.name], "stroke-width": 1.5 }, svg);
      el("text", { x: W - R - 70, y: T + 12 * (j + 1), class: "tick", style: "fill:" + COLORS[s.name] }, svg, s.name);
    });
    const x = sx(cps[i].step);
    el("line", { x1: x, y1: T, x2: x, y2: H - B, class: "marker" }, svg);
  }

  function drawAttention(svg, att) {
    clear(svg);
    const labels = ["a", "b", "="];
    const cw = (W - L - R) / labels.length, ch = (H - B - T) / Math.max(att.length, 1);
    att.forEach((row, h) => {
      el("text", { x: L - 6, y: T + ch * (h + 0.5) + 3, "text-anchor": "end", class: "tick" }, svg, "head " + h);
      row.slice(0, 3).forEach((v, pos) => {
        const shade = Math.round(255 * (1 - v));
        el("rect", { x: L + cw * pos, y: T + ch * h, width: cw - 2, height: ch - 2,
          fill: "rgb(" + shade + "," + shade + ",255)" }, svg);
        el("text", { x: L + cw * (pos + 0.5), y: T + ch * (h + 0.5) + 4, "text-anchor": "middle", class: "tick" }, svg, v.toFixed(3));
      });
    });
    labels.forEach((l, pos) => el("text", { x: L + cw * (pos + 0.5), y: H - B + 14, "text-anchor": "middle", class: "tick" }, svg, "to " + l));
  }

  // The SGLD loss traces of `groklab llc` at checkpoint c (log scale) against L_n(w*).
  function drawLlc(svg, c) {
    clear(svg);
    if (!c.llc) {
      el("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "tick" }, svg,
        "no LLC estimate at step " + c.step + " (groklab llc --steps)");
      return;
    }
    const palette = ["#1f4fd8", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
    const draws = Math.max(...c.llc.loss_trace.map((t) => t.length), 1);
    const series = c.llc.loss_trace.map((t, j) => ({
      name: "chain " + j, color: palette[j % palette.length], pts: t.map((y, n) => [n, y]),
    }));
    series.push({ name: "L_n(w*)", color: "#000", pts: [[0, c.llc.init_loss], [draws - 1, c.llc.init_loss]] });
    // linear losses, as the static trace plot: a flat band above L_n(w*) is the healthy shape
    const yMax = Math.max(...series.flatMap((s) => s.pts.map((p) => p[1])), 1e-12) * 1.05;
    const { sx, sy } = frame(svg, 0, Math.max(draws - 1, 1), yMax,
      "draw (λ̂ = " + c.llc.llc_mean + " ± " + c.llc.llc_se + ")");
    series.forEach((s, j) => {
      const d = s.pts.map((p, n) => (n ? "L" : "M") + sx(p[0]) + " " + sy(p[1])).join(" ");
      el("path", { d, fill: "none", stroke: s.color, "stroke-width": 1 }, svg);
      el("text", { x: L + 6 + 62 * j, y: T + 10, class: "tick", style: "fill:" + s.color }, svg, s.name);
    });
  }

  function show(i) {
    const c = cps[i];
    const none = c.clusters ? c.clusters.none : 0;
    document.getElementById("step-label").textContent =
      "step " + c.step + " (" + (i + 1) + "/" + cps.length + ")";
    drawLoss(document.getElementById("view-loss"), i);
    bars(document.getElementById("view-embed"), c.embed, embedMax, "frequency k");
    bars(document.getElementById("view-wl"), c.w_l || [], wlMax, "frequency k");
    bars(document.getElementById("view-clusters"), clusterArray(c), clusterMax,
      "frequency k (" + none + " neurons in no cluster)");
    drawAttention(document.getElementById("view-attention"), c.attention);
    const llc = document.getElementById("view-llc");
    if (llc) drawLlc(llc, c);
  }

  const slider = GL.slider(cps.length, show);
  // the trace view redraws only at the checkpoints `groklab llc` measured, so the self-test
  // checks the others
  const ids = ["view-loss", "view-embed", "view-wl", "view-clusters", "view-attention"];
  GL.selfTest(slider, cps.map((c) => c.step), (id) => ids.includes(id));
  if (location.hash === "#selftest") {
    const b = document.body;
    b.setAttribute("data-explorer-shapes", String(document.querySelectorAll("#explorer rect, #explorer path").length));
    const images = [...document.querySelectorAll("img")];
    b.setAttribute("data-images", images.length + "/" + images.filter((im) => im.complete && im.naturalWidth > 0).length);
  }
})();
