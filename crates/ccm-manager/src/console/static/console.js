// ccm console: small progressive enhancements. Every page works without this file.
"use strict";

// Copy buttons: <button data-copy="ID"> copies the text of element ID.
function enableCopyButtons() {
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.hidden = false;
    button.addEventListener("click", async () => {
      const source = document.getElementById(button.dataset.copy);
      if (!source) return;
      const status = button.parentElement.querySelector(".copied");
      try {
        await navigator.clipboard.writeText(source.textContent);
        if (status) status.textContent = "Copied";
      } catch (_) {
        // Clipboard access refused (e.g. plain HTTP): select the text for a manual copy.
        const range = document.createRange();
        range.selectNodeContents(source);
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        if (status) status.textContent = "Selected: press Ctrl+C to copy";
      }
    });
  }
}

// Live regions: <div data-poll="URL" data-poll-every="MS"> is replaced by the HTML fragment at
// URL until the fragment no longer carries data-poll (the job has finished).
function enablePolling() {
  for (const region of document.querySelectorAll("[data-poll]")) {
    const every = Math.max(500, Number(region.dataset.pollEvery) || 1500);
    let current = region;
    const tick = async () => {
      try {
        const response = await fetch(current.dataset.poll, {
          headers: { "Accept": "text/html" },
          credentials: "same-origin",
          cache: "no-store",
        });
        if (!response.ok) return; // keep the last state; stop quietly
        const holder = document.createElement("div");
        holder.innerHTML = await response.text();
        const next = holder.firstElementChild;
        if (!next) return;
        current.replaceWith(next);
        current = next;
        if (next.dataset.poll) {
          setTimeout(tick, every);
        } else if (next.dataset.reload === "true") {
          window.location.reload();
        }
      } catch (_) {
        setTimeout(tick, every * 2);
      }
    };
    setTimeout(tick, every);
  }
}

// Focus the error summary of a refused form so screen readers announce it.
function focusErrors() {
  const summary = document.querySelector(".error-summary");
  if (summary) summary.focus();
}

// The RSA key size only applies to RSA keys.
function linkKeyType() {
  const type = document.getElementById("f-key-type");
  const size = document.getElementById("f-rsa-key-size");
  if (!type || !size) return;
  const sync = () => {
    const rsa = type.value === "RSA";
    size.disabled = !rsa;
    size.closest(".field").classList.toggle("muted", !rsa);
  };
  type.addEventListener("change", sync);
  sync();
}

document.addEventListener("DOMContentLoaded", () => {
  enableCopyButtons();
  enablePolling();
  focusErrors();
  linkKeyType();
});
