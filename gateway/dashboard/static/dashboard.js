// The dashboard's only script: copy buttons, and live status and QR codes by polling.
"use strict";

function copyButtons() {
  for (const button of document.querySelectorAll("[data-copy]")) {
    button.addEventListener("click", async () => {
      const text = document.getElementById(button.dataset.copy).textContent.trim();
      const note = button.closest(".card").querySelector("[data-copied]");
      try {
        await navigator.clipboard.writeText(text);
        if (note) note.textContent = "Copied to the clipboard.";
      } catch (err) {
        const range = document.createRange();
        range.selectNodeContents(document.getElementById(button.dataset.copy));
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        if (note) note.textContent = "Selected: press Ctrl+C (or Cmd+C) to copy.";
      }
    });
  }
}

function setStatus(scope, status, reason, phone) {
  const badge = scope.querySelector("[data-status]");
  if (badge && badge.textContent !== status) {
    badge.textContent = status;
    badge.className = "badge status-" + status.toLowerCase();
  }
  const why = scope.querySelector("[data-reason]");
  if (why) why.textContent = reason || "";
  const number = scope.querySelector("[data-phone]");
  if (number && phone) number.textContent = phone;
}

async function poll(url, apply, every) {
  for (;;) {
    try {
      const answer = await fetch(url, {credentials: "same-origin", cache: "no-store"});
      if (answer.status === 401 || answer.redirected) return;  // logged out: stop
      if (answer.ok) apply(await answer.json());
    } catch (err) {
      // the gateway is restarting, or the network dropped: try again on the next tick
    }
    await new Promise((resolve) => setTimeout(resolve, every));
  }
}

function pollList(root) {
  poll(root.dataset.pollList, (data) => {
    for (const s of data.sessions) {
      const row = root.querySelector(`[data-session="${s.id}"]`);
      if (row) setStatus(row, s.status, s.reason, s.phone);
    }
  }, 2000);
}

function pollSession(root) {
  const panel = root.querySelector("[data-qr-panel]");
  const image = root.querySelector("[data-qr]");
  const connected = root.querySelector("[data-connected]");
  const idle = root.querySelector("[data-idle-hint]");
  let shown = null;
  poll(root.dataset.pollSession, (live) => {
    setStatus(root, live.status, live.reason, live.phone);
    if (connected) connected.hidden = live.status !== "CONNECTED";
    // "Connecting: scan the QR code" is stale once the scan happened
    const done = document.querySelector("[data-done]");
    if (done && live.status === "CONNECTED" && new URLSearchParams(location.search).get("done") === "connect") {
      done.hidden = true;
    }
    if (idle) idle.hidden = live.status === "CONNECTED" || live.status === "CONNECTING";
    if (live.qr && live.qr !== shown) {
      image.src = `${root.dataset.qrSrc}?v=${live.qr}`;
      shown = live.qr;
    }
    if (panel) panel.hidden = !live.qr;
    if (!live.qr) shown = null;
  }, 1000);
}

document.addEventListener("DOMContentLoaded", () => {
  copyButtons();
  const list = document.querySelector("[data-poll-list]");
  if (list) pollList(list);
  const session = document.querySelector("[data-poll-session]");
  if (session) pollSession(session);
});
