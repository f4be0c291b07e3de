// groklab report explorers' shared core: SVG helpers, the loss chart and the `#selftest` hook.
// No library: plain DOM and SVG. Each family's view script runs after this one and uses `GL`.
"use strict";
window.__reportErrors = [];
window.addEventListener("error", (e) => window.__reportErrors.push(String(e.message)));

const GL = (function () {
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
  function title(node, text) {
    node.appendChild(document.createElementNS(NS, "title")).textContent = text;
  }

  // Lines of (x, y) points, log10 y; a vertical marker at `mark` when given; legends `legend`
  // pixels from the right edge.
  function lines(svg, series, xLabel, mark, legend) {
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
      el("text", { x: W - R - (legend || 110), y: T + 12 * (j + 1), class: "tick", style: "fill:" + s.color }, svg, s.name);
    });
    if (mark !== undefined) {
      el("line", { x1: sx(mark), y1: T, x2: sx(mark), y2: H - B, class: "marker" }, svg);
    }
  }

  // The `#selftest` hook: moves `slider` through three checkpoints like a user and records on
  // <body> whether every view whose id `keep` accepts redrew ("pass" or the problems).
  function selfTest(slider, steps, keep) {
    if (location.hash !== "#selftest") return;
    const ids = [...document.querySelectorAll("#explorer svg.view")].map((s) => s.id).filter(keep);
    const problems = [];
    let changed = 0, prev = null;
    for (const i of [0, Math.floor(steps.length / 2), steps.length - 1]) {
      slider.value = i;
      slider.dispatchEvent(new Event("input", { bubbles: true }));
      const label = document.getElementById("step-label").textContent;
      if (!label.startsWith("step " + steps[i] + " ")) problems.push("label " + label);
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

  // The slider over `n` checkpoints, at the last one, calling `show(i)` on every move.
  function slider(n, show) {
    const s = document.getElementById("slider");
    s.max = Math.max(n - 1, 0);
    s.value = s.max;
    s.addEventListener("input", () => show(+s.value));
    if (n) show(+s.value);
    return s;
  }

  return { NS, W, H, el, clear, title, lines, selfTest, slider };
})();
