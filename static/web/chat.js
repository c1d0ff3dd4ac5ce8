// Chat over /ws/chat/<model_version_id>/: the client sends {"message"}; the server streams
// {"type": "token", "text"} pieces, then one {"type": "reply", "text": <whole reply>}; errors are
// {"type": "error", "message"} and the socket stays open. While a reply has not started, the bot's
// bubble shows that it is typing. A dropped socket is opened again, and {"type": "history"} brings
// the conversation back on every connection.
(function () {
  const modelId = document.currentScript.dataset.model;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const log = document.getElementById("chat-log");
  const form = document.getElementById("chat-form");
  const input = document.getElementById("chat-input");
  const send = document.getElementById("chat-send");
  const connection = document.getElementById("chat-connection");
  const errorBox = document.getElementById("chat-error");
  const REFUSALS = {
    4401: "You are signed out: sign in again to chat.",
    4403: "This page's origin is not allowed to open the chat.",
    4404: "This model does not exist, or you may not use it.",
  };
  let socket = null;
  let replying = null; // the <li> the streamed reply goes into (typing until its first piece)
  let retryDelay = 1000;
  let everOpened = false;

  function add(role, text) {
    const item = document.createElement("li");
    item.className = `chat-message chat-${role}`;
    item.textContent = text;
    log.appendChild(item);
    item.scrollIntoView({ block: "end" });
    return item;
  }

  function typing() {
    const item = add("bot", "");
    item.classList.add("chat-typing");
    item.setAttribute("aria-label", "The bot is typing");
    return item;
  }

  function stopTyping(item) {
    item.classList.remove("chat-typing");
    item.removeAttribute("aria-label");
    return item;
  }

  function dropTyping() {
    if (replying && replying.classList.contains("chat-typing")) replying.remove();
    replying = null;
  }

  function showError(text) {
    errorBox.textContent = text;
    errorBox.classList.toggle("hidden", !text);
  }

  function enable(on) {
    input.disabled = send.disabled = !on;
    if (on) input.focus();
  }

  function connect() {
    socket = new WebSocket(`${scheme}://${location.host}/ws/chat/${modelId}/`);
    socket.onopen = () => {
      everOpened = true;
      retryDelay = 1000;
      connection.textContent = "Connected.";
      showError("");
      enable(true);
      socket.send(JSON.stringify({ type: "history" })); // the conversation so far, also after a drop
    };
    socket.onmessage = (message) => {
      const event = JSON.parse(message.data);
      if (event.type === "history") {
        log.innerHTML = "";
        event.messages.forEach((message) => add(message.role === "user" ? "user" : "bot", message.text));
      } else if (event.type === "token") {
        replying = stopTyping(replying || add("bot", ""));
        replying.textContent += event.text;
      } else if (event.type === "reply") {
        stopTyping(replying || add("bot", "")).textContent = event.text;
        replying = null;
        enable(true);
      } else if (event.type === "error") {
        dropTyping();
        showError(event.message);
        enable(true);
      }
    };
    socket.onclose = (closed) => {
      enable(false);
      dropTyping();
      if (REFUSALS[closed.code] || (closed.code >= 4400 && closed.code < 4500)) {
        connection.textContent = "Not connected.";
        showError(REFUSALS[closed.code] || `The chat refused the connection (code ${closed.code}).`);
        return;
      }
      if (!everOpened && retryDelay >= 8000) {
        showError("The chat service does not answer; it retries in the background.");
      }
      connection.textContent = "Disconnected; reconnecting…";
      setTimeout(connect, retryDelay * (0.5 + Math.random()));
      retryDelay = Math.min(2 * retryDelay, 30000);
    };
  }

  form.addEventListener("submit", (submitted) => {
    submitted.preventDefault();
    const text = input.value.trim();
    if (!text || !socket || socket.readyState !== WebSocket.OPEN) return;
    add("user", text);
    replying = typing();
    socket.send(JSON.stringify({ message: text }));
    input.value = "";
    enable(false);
    showError("");
  });

  connect();
})();
