// Dataset upload: the file goes to the REST API with a progress bar, then the page follows the
// validation (done on a worker) until the dataset is ready or invalid, and says which.
(function () {
  const { setProgress } = window.dlsite || {};
  const form = document.getElementById("upload-form");
  if (!form) return;
  const kind = document.getElementById("upload-kind");
  const help = document.getElementById("upload-kind-help");
  const result = document.getElementById("upload-result");
  const progressBox = document.getElementById("upload-progress");
  const progress = progressBox.querySelector("[role=progressbar]");
  const csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;

  kind.addEventListener("change", () => (help.textContent = kind.selectedOptions[0].dataset.help || ""));

  function showErrors(errors) {
    ["name", "kind", "file"].forEach((field) => {
      const element = document.getElementById(`upload-${field}-error`);
      const messages = (errors || {})[field];
      element.hidden = !messages;
      element.textContent = messages ? messages.join(" ") : "";
    });
  }

  function link(dataset) {
    return `<a href="/datasets/${dataset.id}/">${dataset.name.replace(/[<>&"]/g, "")}</a>`;
  }

  // Validation is short (seconds): a few looks, slowing down, until it is decided.
  async function followValidation(dataset, delay = 500) {
    const response = await fetch(`/api/v1/datasets/${dataset.id}/`, { credentials: "same-origin" });
    const body = await response.json();
    if (body.status === "validating") {
      result.innerHTML = `${link(body)}: uploaded; being checked…`;
      setTimeout(() => followValidation(body, Math.min(delay * 1.5, 5000)), delay);
    } else if (body.status === "ready") {
      result.innerHTML = `${link(body)} is ready.`;
      result.className = "ok";
    } else {
      result.textContent = `${body.name} is invalid: ${body.error}`;
      result.className = "error-box";
    }
  }

  form.addEventListener("submit", (submitted) => {
    submitted.preventDefault();
    showErrors({});
    result.className = "";
    result.textContent = "";
    const request = new XMLHttpRequest();
    request.open("POST", form.action);
    request.setRequestHeader("X-CSRFToken", csrf);
    request.responseType = "json";
    progressBox.hidden = false;
    setProgress(progress, 0);
    request.upload.onprogress = (event) => event.lengthComputable && setProgress(progress, event.loaded / event.total);
    request.onload = () => {
      const body = request.response || {};
      if (request.status === 201) {
        setProgress(progress, 1);
        followValidation(body);
      } else {
        showErrors(body.errors);
        result.textContent = body.message || `Upload failed (HTTP ${request.status}).`;
        result.className = "error-box";
      }
    };
    request.onerror = () => {
      result.textContent = "The upload was interrupted: check the connection and try again.";
      result.className = "error-box";
    };
    request.send(new FormData(form));
  });
})();
