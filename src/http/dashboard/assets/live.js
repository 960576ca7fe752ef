// Live figures without reloading: a page whose <main> names a live endpoint (data-live-src) polls
// it and swaps in the fragments it returns (already escaped HTML rendered by the server, the same
// markup as on first load) for the elements marked data-live-fragment. A fragment the operator is
// using (focus inside, an open confirmation) is left alone until they are done with it.
/* global document */
"use strict";

(function live() {
  const main = document.querySelector("main[data-live-src]");
  if (!main) return;
  const source = main.getAttribute("data-live-src");
  const interval = Number(main.getAttribute("data-live-interval")) || 5000;
  const status = main.querySelector("[data-live-status]");
  let timer = null;
  let busy = false;

  function say(text) {
    if (status) status.textContent = text;
  }

  function inUse(element) {
    return element.contains(document.activeElement) || element.querySelector("details[open]") !== null;
  }

  async function refresh() {
    timer = null;
    if (busy) return;
    busy = true;
    try {
      const response = await fetch(source, { headers: { accept: "application/json" }, credentials: "same-origin", cache: "no-store" });
      if (response.status === 401) {
        say("Your session has ended: reload the page to sign in again. Live updates stopped.");
        return;
      }
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const { fragments } = await response.json();
      for (const element of main.querySelectorAll("[data-live-fragment]")) {
        const markup = fragments[element.getAttribute("data-live-fragment")];
        if (typeof markup !== "string" || markup === element.dataset.liveMarkup || inUse(element)) continue;
        element.innerHTML = markup;
        element.dataset.liveMarkup = markup;
      }
      say(`Live: updated ${new Date().toISOString().slice(11, 19)} UTC.`);
    } catch (error) {
      say(`Live updates paused (${error.message}); retrying.`);
    } finally {
      busy = false;
    }
    schedule();
  }

  function schedule() {
    if (timer === null && !document.hidden) timer = setTimeout(refresh, interval);
  }

  // A hidden tab does not poll; it catches up as soon as it is shown again.
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) {
      if (timer !== null) clearTimeout(timer);
      timer = null;
    } else if (timer === null) {
      refresh();
    }
  });
  schedule();
})();
