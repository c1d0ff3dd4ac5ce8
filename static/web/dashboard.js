// Dashboard: every unfinished run in the list follows its websocket; badges and bars change in place.
(function () {
  const { followRun, setProgress, setStatus: setBadge, TERMINAL } = window.dlsite;

  // The counts by status follow the runs on the page as they move from one status to another.
  function count(status, change) {
    const element = document.querySelector(`[data-count="${status}"]`);
    if (element) element.textContent = String(Number(element.textContent) + change);
  }

  document.querySelectorAll("tr[data-live-run]").forEach((row) => {
    const runId = row.dataset.liveRun;
    const badge = row.querySelector(".status");
    const progress = row.querySelector("[role=progressbar]");
    const setStatus = (element, status) => {
      if (element.textContent !== status) {
        count(element.textContent, -1);
        count(status, +1);
      }
      setBadge(element, status);
    };
    const follower = followRun(runId, {
      onSnapshot(snapshot) {
        setStatus(badge, snapshot.status);
        setProgress(progress, snapshot.progress);
        if (TERMINAL.includes(snapshot.status)) follower && follower.stop();
      },
      onEvent(event) {
        if (event.type === "status") {
          setStatus(badge, event.status);
          if (TERMINAL.includes(event.status)) {
            if (event.status === "succeeded") setProgress(progress, 1);
            follower.stop();
          }
        }
        if (event.type === "progress") setProgress(progress, event.progress);
      },
    });
  });

  // Compare: the checked runs' ids go to /compare/?runs=...
  const form = document.getElementById("compare-form");
  if (form) {
    form.addEventListener("submit", (submitted) => {
      submitted.preventDefault();
      const ids = [...form.querySelectorAll("input[name=run]:checked")].map((box) => box.value);
      const note = document.getElementById("compare-note");
      if (ids.length < 2) {
        note.textContent = "Pick two or more runs of one pipeline to compare.";
        return;
      }
      location.href = `/compare/?runs=${ids.join(",")}`;
    });
  }
})();
