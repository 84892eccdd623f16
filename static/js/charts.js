// What the console's uPlot charts share (the deployment page's and a canary's rollout page's):
// a time-series chart with dashed, labelled markers, fed by a JSON endpoint polled every few
// seconds while the page is visible, resized with the window.
(function () {
  "use strict";
  const HEIGHT = 180;
  const fmt = (digits) => (u, v) => (v == null ? "–" : v.toFixed(digits));

  // markers() -> [{t, label, bad}]: dashed vertical lines with their labels.
  function markerHook(markers) {
    return function (u) {
      const ctx = u.ctx;
      ctx.save();
      for (const m of markers()) {
        const x = u.valToPos(m.t, "x", true);
        if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
        ctx.strokeStyle = m.bad ? "#dc2626" : "#64748b";
        ctx.setLineDash([5, 4]);
        ctx.beginPath();
        ctx.moveTo(x, u.bbox.top);
        ctx.lineTo(x, u.bbox.top + u.bbox.height);
        ctx.stroke();
        ctx.setLineDash([]);
        ctx.fillStyle = ctx.strokeStyle;
        ctx.font = `${11 * devicePixelRatio}px sans-serif`;
        ctx.fillText(m.label, x + 4, u.bbox.top + 12 * devicePixelRatio);
      }
      ctx.restore();
    };
  }

  // series: [{label, stroke, digits}]; markers as for markerHook.
  function chart(el, series, yLabel, markers) {
    const opts = {
      width: el.clientWidth || 500, height: HEIGHT,
      scales: { x: { time: true } },
      axes: [{}, { label: yLabel, size: 60 }],
      series: [{}].concat(series.map((s) => ({ label: s.label, stroke: s.stroke, width: 1.5,
        value: fmt(s.digits ?? 1), spanGaps: false }))),
      hooks: { draw: [markerHook(markers)] },
      legend: { live: true },
    };
    return new uPlot(opts, [[]].concat(series.map(() => [])), el);
  }

  // Every chart follows its container's width.
  function resizing(charts) {
    window.addEventListener("resize", () => {
      for (const c of Object.values(charts())) c.setSize({ width: c.root.parentElement.clientWidth, height: HEIGHT });
    });
  }

  // refresh() now and every `ms` while the page is visible; refresh may return false to stop.
  function polling(refresh, ms) {
    let timer = null;
    const tick = async () => {
      if (document.hidden) return;
      if ((await refresh()) === false && timer !== null) {
        clearInterval(timer);
        timer = null;
      }
    };
    timer = setInterval(tick, ms);
    refresh().then((more) => {
      if (more === false && timer !== null) {
        clearInterval(timer);
        timer = null;
      }
    });
  }

  // GET url as JSON; the totals line says what failed and that it retries.
  async function getJSON(url, totals, what) {
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      return await response.json();
    } catch (err) {
      totals.textContent = `Could not load ${what} (${err.message}); retrying.`;
      return null;
    }
  }

  window.ModelgateCharts = { chart, resizing, polling, getJSON };
})();
