// Compare: one plotly chart per metric, each run's curve overlaid.
(function () {
  const histories = JSON.parse(document.getElementById("histories-data").textContent); // run id -> key -> points
  const container = document.getElementById("compare-charts");
  const keys = [...new Set(Object.values(histories).flatMap((metrics) => Object.keys(metrics)))].sort();
  document.getElementById("compare-empty").hidden = keys.length > 0;
  keys.forEach((key) => {
    const chart = document.createElement("div");
    chart.className = "chart";
    chart.id = "compare-chart-" + key.replace(/[^A-Za-z0-9_-]/g, "-");
    chart.dataset.metric = key;
    chart.setAttribute("role", "img");
    chart.setAttribute("aria-label", `${key} of each run by step`);
    container.appendChild(chart);
    const traces = Object.entries(histories)
      .filter(([, metrics]) => metrics[key])
      .map(([runId, metrics]) => ({
        x: metrics[key].map((p) => p.step),
        y: metrics[key].map((p) => p.value),
        mode: "lines+markers",
        name: `run #${runId}`,
      }));
    chart.dataset.traces = String(traces.length);
    Plotly.newPlot(
      chart,
      traces,
      { title: { text: key, font: { size: 14 } }, margin: { l: 50, r: 10, t: 36, b: 36 }, height: 260, xaxis: { title: { text: "step" } } },
      { responsive: true, displaylogo: false }
    );
  });
})();
