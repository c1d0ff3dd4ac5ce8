// The run page, live: status, progress, elapsed and ETA, one plotly chart per metric, the log tail and
// the artifacts gallery, all from the run's websocket (window.dlsite.followRun). After a reconnect or
// a gap the snapshot redraws the charts from the whole history, and the log, the artifacts and the
// run's details are read again over REST, so nothing is missing.
(function () {
  const { followRun, setProgress, setStatus, TERMINAL } = window.dlsite;
  const readJson = (id) => JSON.parse(document.getElementById(id).textContent);
  let run = readJson("run-data");
  const runId = run.id;
  const history = {}; // metric key -> [{step, value}] sorted by step
  const charts = new Map(); // metric key -> chart element
  const dirty = new Set();
  let logLines = readJson("log-data"); // [{id, time, level, message}] as read over REST
  let liveLines = []; // lines from events since (they carry no id)
  const MAX_LOG_LINES = 1000;
  let progress = run.progress;

  const element = (id) => document.getElementById(id);
  const statusElement = element("run-status");
  const progressElement = element("run-progress");

  // Status, progress, time -----------------------------------------------------------------------

  function showRun(details) {
    run = details;
    setStatus(statusElement, run.status);
    if (TERMINAL.includes(run.status)) {
      const cancel = element("cancel-form");
      if (cancel) cancel.remove();
    }
    const error = element("run-error");
    error.textContent = run.error || "";
    error.classList.toggle("hidden", !run.error);
    element("attempt").textContent = run.attempt;
    element("worker").textContent = `${run.queue || "—"} · ${run.worker || "—"}`;
    element("code-version").innerHTML = `<code>${escape(run.code_version || "—")}</code>`;
    element("dataset-hash").innerHTML = `<code>${escape(run.dataset_hash || "—")}</code>`;
    if (run.model_version) {
      const link = element("model-link");
      link.href = `/models/#model-${run.model_version.id}`;
      link.textContent = `Model ${run.model_version.name} v${run.model_version.version}`;
      link.classList.remove("hidden");
    }
    tick();
  }

  function duration(seconds) {
    seconds = Math.max(0, Math.round(seconds));
    const hours = Math.floor(seconds / 3600);
    const minutes = Math.floor((seconds % 3600) / 60);
    const rest = seconds % 60;
    return hours ? `${hours} h ${minutes} min` : minutes ? `${minutes} min ${rest} s` : `${rest} s`;
  }

  // Elapsed and ETA count on in the browser between events; nothing is asked of the server.
  function tick() {
    const started = run.started_at ? Date.parse(run.started_at) : null;
    const finished = run.finished_at ? Date.parse(run.finished_at) : null;
    element("elapsed").textContent = started ? duration(((finished || Date.now()) - started) / 1000) : "—";
    let eta = "—";
    if (finished) {
      element("eta-label").textContent = "finished";
      eta = new Date(finished).toLocaleTimeString();
    } else if (started && run.status === "running" && progress > 0.01 && progress < 1) {
      const elapsed = (Date.now() - started) / 1000;
      eta = `about ${duration((elapsed * (1 - progress)) / progress)} left`;
    }
    element("eta").textContent = eta;
  }
  setInterval(tick, 1000);

  async function refreshRun() {
    const response = await fetch(`/api/v1/runs/${runId}/`, { credentials: "same-origin" });
    if (response.ok) showRun(await response.json());
  }

  // Charts ---------------------------------------------------------------------------------------

  function mergeMetrics(metrics, replace) {
    if (replace) {
      Object.keys(history).forEach((key) => delete history[key]);
      charts.forEach((_, key) => dirty.add(key));
    }
    Object.entries(metrics).forEach(([key, points]) => {
      const byStep = new Map((history[key] || []).map((p) => [p.step, p]));
      points.forEach((p) => byStep.set(p.step, { step: p.step, value: p.value }));
      history[key] = [...byStep.values()].sort((a, b) => a.step - b.step);
      dirty.add(key);
    });
    requestAnimationFrame(draw);
  }

  function chartFor(key) {
    let chart = charts.get(key);
    if (!chart) {
      chart = document.createElement("div");
      chart.className = "chart";
      chart.id = "chart-" + key.replace(/[^A-Za-z0-9_-]/g, "-");
      chart.dataset.metric = key;
      chart.setAttribute("role", "img");
      chart.setAttribute("aria-label", `Chart of ${key} by step`);
      const siblings = [...element("charts").children];
      const after = siblings.find((other) => other.dataset.metric > key);
      element("charts").insertBefore(chart, after || null);
      charts.set(key, chart);
    }
    return chart;
  }

  function draw() {
    if (!dirty.size) return;
    const keys = [...dirty];
    dirty.clear();
    keys.forEach((key) => {
      const points = history[key] || [];
      const chart = chartFor(key);
      chart.dataset.points = String(points.length);
      Plotly.react(
        chart,
        [{ x: points.map((p) => p.step), y: points.map((p) => p.value), mode: "lines+markers", name: key }],
        {
          title: { text: key, font: { size: 14 } },
          margin: { l: 50, r: 10, t: 36, b: 36 },
          height: 240,
          xaxis: { title: { text: "step" } },
        },
        { responsive: true, displaylogo: false }
      );
    });
    element("charts-empty").hidden = Object.keys(history).length > 0;
    const body = element("latest-metrics").tBodies[0];
    body.innerHTML = "";
    Object.keys(history).sort().forEach((key) => {
      const last = history[key][history[key].length - 1];
      if (!last) return;
      const row = body.insertRow();
      row.insertCell().textContent = key;
      row.insertCell().textContent = last.step;
      row.insertCell().textContent = Number(last.value).toPrecision(5);
    });
  }

  // Log ------------------------------------------------------------------------------------------

  function drawLog() {
    const lines = [...logLines.map((line) => line.message), ...liveLines].slice(-MAX_LOG_LINES);
    const log = element("log");
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.textContent = lines.join("\n");
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  async function refreshLog() {
    let after = logLines.length ? logLines[logLines.length - 1].id : 0;
    for (;;) {
      const response = await fetch(`/api/v1/runs/${runId}/logs/?after=${after}`, { credentials: "same-origin" });
      if (!response.ok) return;
      const page = await response.json();
      logLines = logLines.concat(page).slice(-MAX_LOG_LINES);
      if (!page.length || page.length < 1000) break;
      after = page[page.length - 1].id;
    }
    liveLines = [];
    drawLog();
  }

  // Artifacts ------------------------------------------------------------------------------------

  const IMAGE = /\.(png|jpe?g|gif|svg|webp)$/i;
  const VIDEO = /\.(mp4|webm|ogv|mov)$/i;

  function escape(text) {
    return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  }

  function size(bytes) {
    if (bytes < 1024) return `${bytes} B`;
    if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
    return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
  }

  function drawArtifacts(artifacts) {
    const gallery = element("gallery");
    gallery.innerHTML = artifacts
      .map((artifact) => {
        const title = escape((artifact.metadata && artifact.metadata.title) || artifact.name);
        const url = escape(artifact.download_url);
        let media = "";
        if (IMAGE.test(artifact.name)) {
          media = `<a href="${url}"><img src="${url}" alt="${escape(artifact.name)}" loading="lazy"></a>`;
        } else if (VIDEO.test(artifact.name)) {
          // The download answers Range requests, so the player can seek.
          media = `<video controls preload="metadata" src="${url}" aria-label="${title}"></video>`;
        }
        return `<figure class="artifact artifact-${escape(artifact.kind)}" data-name="${escape(artifact.name)}">${media}
          <figcaption>${title}<br><a href="${url}" download>${escape(artifact.name)}</a> <small>${escape(artifact.kind)}, ${size(artifact.size)}</small></figcaption></figure>`;
      })
      .join("");
    element("gallery-empty").hidden = artifacts.length > 0;
  }

  async function refreshArtifacts() {
    const response = await fetch(`/api/v1/runs/${runId}/artifacts/`, { credentials: "same-origin" });
    if (response.ok) drawArtifacts(await response.json());
  }

  // The websocket --------------------------------------------------------------------------------

  const connection = element("connection");
  followRun(runId, {
    onSnapshot(snapshot, reconnected) {
      connection.textContent = TERMINAL.includes(snapshot.status) ? "" : "live";
      progress = snapshot.progress;
      setStatus(statusElement, snapshot.status);
      setProgress(progressElement, snapshot.progress);
      if (snapshot.progress_message) element("progress-message").textContent = snapshot.progress_message;
      mergeMetrics(snapshot.metrics, true);
      // What happened between the page's own reads and this snapshot (or while disconnected).
      refreshLog();
      refreshArtifacts();
      if (reconnected) refreshRun();
    },
    onEvent(event) {
      if (event.type === "metrics") mergeMetrics(event.metrics, false);
      if (event.type === "progress") {
        progress = event.progress;
        setProgress(progressElement, event.progress);
        element("progress-message").textContent = event.message || "";
      }
      if (event.type === "log") {
        liveLines.push(event.message);
        drawLog();
      }
      if (event.type === "artifact") refreshArtifacts();
      if (event.type === "status") {
        setStatus(statusElement, event.status);
        refreshRun();
        if (TERMINAL.includes(event.status)) {
          connection.textContent = "";
          if (event.status === "succeeded") setProgress(progressElement, 1);
          refreshArtifacts();
          refreshLog();
        }
      }
    },
    onDisconnect() {
      connection.textContent = "reconnecting…";
    },
    onRefused(code) {
      connection.textContent = code === 4401 ? "signed out: sign in again to follow this run" : "live updates refused";
    },
  });

  showRun(run);
  drawLog();
  drawArtifacts(readJson("artifacts-data"));
})();
