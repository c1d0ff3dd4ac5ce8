// A run's websocket, /ws/runs/<id>/: a snapshot on every connection, then events numbered by `seq`.
// A missing seq asks the server for a fresh snapshot; a dropped connection is opened again (with
// growing, jittered pauses) and starts with a snapshot, so the page never keeps a hole.
// Shared by the dashboard and the run page: window.dlsite.followRun(runId, {onSnapshot, onEvent, onRefused}).
(function () {
  const scheme = location.protocol === "https:" ? "wss" : "ws";

  function followRun(runId, handlers) {
    let lastSeq = 0;
    let retryDelay = 1000;
    let stopped = false;
    let socket = null;

    function connect() {
      socket = new WebSocket(`${scheme}://${location.host}/ws/runs/${runId}/`);
      socket.onmessage = (message) => {
        retryDelay = 1000;
        const event = JSON.parse(message.data);
        if (event.type === "snapshot") {
          const reconnected = lastSeq > 0;
          lastSeq = event.seq;
          handlers.onSnapshot && handlers.onSnapshot(event, reconnected);
          return;
        }
        if (event.seq <= lastSeq && !event.final) return; // already in the snapshot
        if (event.seq > lastSeq + 1) {
          socket.send(JSON.stringify({ type: "resync" })); // a snapshot holds what went missing
          return;
        }
        lastSeq = Math.max(lastSeq, event.seq);
        handlers.onEvent && handlers.onEvent(event);
      };
      socket.onclose = (closed) => {
        if (stopped) return;
        if (closed.code >= 4400 && closed.code < 4500) {
          // Refused: signed out (4401), another origin (4403) or no such run of this user (4404).
          handlers.onRefused && handlers.onRefused(closed.code);
          return;
        }
        handlers.onDisconnect && handlers.onDisconnect();
        setTimeout(connect, retryDelay * (0.5 + Math.random()));
        retryDelay = Math.min(2 * retryDelay, 30000);
      };
    }
    connect();
    return {
      stop() {
        stopped = true;
        if (socket) socket.close();
      },
    };
  }

  function setProgress(element, fraction) {
    const value = Math.max(0, Math.min(1, Number(fraction) || 0));
    const percent = Math.round(value * 100);
    element.setAttribute("aria-valuenow", String(percent));
    element.setAttribute("aria-valuetext", `${percent}%`);
    const bar = element.querySelector(".bar");
    if (bar) bar.style.width = `${value * 100}%`;
    const label = element.querySelector(".label");
    if (label) label.textContent = `${percent}%`;
  }

  function setStatus(element, status) {
    element.textContent = status;
    element.className = element.className.replace(/\bstatus-\w+/g, "").trim() + " status-" + status;
  }

  const TERMINAL = ["succeeded", "failed", "cancelled"];

  window.dlsite = Object.assign(window.dlsite || {}, { followRun, setProgress, setStatus, TERMINAL });
})();
