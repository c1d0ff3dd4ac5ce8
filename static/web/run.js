// Live run page: a websocket snapshot, then events; reloads the snapshot when a seq is missed.
(function () {
  const script = document.currentScript;
  const runId = script.dataset.run;
  const history = {};
  let lastSeq = 0;
  const colours = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2"];

  function draw() {
    const canvas = document.getElementById("chart");
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    const keys = Object.keys(history).filter((k) => history[k].length > 1);
    const points = keys.flatMap((k) => history[k]);
    if (!points.length) return;
    const maxStep = Math.max(...points.map((p) => p.step));
    const minStep = Math.min(...points.map((p) => p.step));
    const maxValue = Math.max(...points.map((p) => p.value));
    const minValue = Math.min(0, ...points.map((p) => p.value));
    const x = (s) => 40 + ((s - minStep) / Math.max(maxStep - minStep, 1)) * (canvas.width - 60);
    const y = (v) => canvas.height - 20 - ((v - minValue) / Math.max(maxValue - minValue, 1e-9)) * (canvas.height - 40);
    keys.forEach((key, i) => {
      ctx.strokeStyle = colours[i % colours.length];
      ctx.beginPath();
      history[key].forEach((p, j) => (j ? ctx.lineTo(x(p.step), y(p.value)) : ctx.moveTo(x(p.step), y(p.value))));
      ctx.stroke();
      ctx.fillStyle = ctx.strokeStyle;
      ctx.fillText(key, 45, 15 + 12 * i);
    });
  }

  function table() {
    const body = document.querySelector("#metrics tbody");
    body.innerHTML = "";
    Object.keys(history).sort().forEach((key) => {
      const last = history[key][history[key].length - 1];
      const row = body.insertRow();
      row.insertCell().textContent = key;
      row.insertCell().textContent = last.value.toFixed(4);
    });
  }

  function mergeMetrics(metrics) {
    Object.entries(metrics).forEach(([key, points]) => {
      const byStep = new Map((history[key] || []).map((p) => [p.step, p]));
      points.forEach((p) => byStep.set(p.step, p));
      history[key] = [...byStep.values()].sort((a, b) => a.step - b.step);
    });
    draw();
    table();
  }

  function setStatus(status) {
    const el = document.getElementById("status");
    el.textContent = status;
    el.className = "status " + status;
  }

  const scheme = location.protocol === "https:" ? "wss" : "ws";
  let retryDelay = 1000;

  // The server sends a fresh snapshot on every connection, so after a restart (of the server, or of
  // Redis behind it) reconnecting is all it takes to be in step again.
  function connect() {
    const socket = new WebSocket(`${scheme}://${location.host}/ws/runs/${runId}/`);
    socket.onmessage = (message) => {
      retryDelay = 1000;
      const event = JSON.parse(message.data);
      if (event.type === "snapshot") {
        Object.keys(history).forEach((k) => delete history[k]);
        lastSeq = event.seq;
        setStatus(event.status);
        document.getElementById("progress").value = event.progress;
        mergeMetrics(event.metrics);
        return;
      }
      if (event.seq > lastSeq + 1) socket.send(JSON.stringify({ type: "resync" }));
      lastSeq = Math.max(lastSeq, event.seq);
      if (event.type === "status") setStatus(event.status);
      if (event.type === "progress") {
        document.getElementById("progress").value = event.progress;
        document.getElementById("progress-message").textContent = event.message;
      }
      if (event.type === "metrics") mergeMetrics(event.metrics);
      if (event.type === "log") document.getElementById("log").textContent += event.message + "\n";
    };
    socket.onclose = (closed) => {
      if (closed.code >= 4400 && closed.code < 4500) return; // refused: signed out, or no such run
      // Spread out, so that the pages of a restarted server do not all come back at once.
      setTimeout(connect, retryDelay * (0.5 + Math.random()));
      retryDelay = Math.min(2 * retryDelay, 30000);
    };
  }
  connect();
})();
