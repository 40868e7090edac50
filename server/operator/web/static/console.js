// GridShare console: keep the page current without a reload button.
// Every few seconds ask /console/state for a marker that moves whenever the engine publishes, a device
// reports, a feeder changes state or an operator writes; when it moves (or every 30 s, since times
// age), fetch this page again and swap its <main>. Nothing is refreshed while the operator is filling
// in a form, and polling pauses while the tab is hidden.

const POLL_MS = 2500;
const FORCE_MS = 30000;
let marker = null;
let lastSwap = Date.now();

function busy() {
  const active = document.activeElement;
  return active !== null && active.closest("form") !== null && active.tagName !== "BUTTON";
}

async function swap() {
  const response = await fetch(window.location.href, { headers: { "x-console-refresh": "1" }, credentials: "same-origin" });
  if (response.redirected || !response.ok) {
    if (response.status === 401 || response.redirected) window.location.reload();
    return;
  }
  const doc = new DOMParser().parseFromString(await response.text(), "text/html");
  const fresh = doc.querySelector("main#content");
  const current = document.querySelector("main#content");
  if (fresh && current) {
    current.replaceWith(fresh);
    const stamp = doc.querySelector("#freshness");
    const mine = document.querySelector("#freshness");
    if (stamp && mine) mine.textContent = stamp.textContent;
  }
  lastSwap = Date.now();
}

async function tick() {
  if (document.hidden || busy()) return;
  try {
    const response = await fetch("/console/state", { credentials: "same-origin", cache: "no-store" });
    if (response.status === 401) { window.location.reload(); return; }
    if (!response.ok) return;
    const state = await response.json();
    const moved = marker !== null && state.marker !== marker;
    marker = state.marker;
    if (moved || Date.now() - lastSwap > FORCE_MS) await swap();
  } catch (err) {
    const mine = document.querySelector("#freshness");
    if (mine) mine.textContent = "Server not reachable: " + err;
  }
}

if (document.querySelector('meta[name="csrf-token"]')) {
  setInterval(tick, POLL_MS);
  tick();
}
