// Flow run page: follow the run's state (GET /api/v1/flows/runs/{id}, with the page's session) until it finishes.
"use strict";

const FINISHED = ["COMPLETED", "FAILED", "CRASHED", "CANCELLED"];

function stamp(iso) {
  return iso ? iso.replace("T", " ").slice(0, 16) : "";
}

document.addEventListener("DOMContentLoaded", () => {
  const box = document.querySelector("[data-run]");
  if (!box || box.dataset.finished === "yes") return;
  const show = (selector, text) => {
    const el = box.querySelector(selector);
    if (el) el.textContent = text;
  };
  const poll = async () => {
    try {
      const response = await fetch(box.dataset.run, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (response.ok) {
        const run = await response.json();
        show("[data-run-state]", run.state_name);
        show("[data-run-message]", run.message || "");
        show("[data-run-finished]", stamp(run.finished_at));
        if (FINISHED.includes(run.state)) {
          show("[data-run-result]", run.result === null ? "none" : JSON.stringify(run.result, null, 2));
          box.dataset.finished = "yes";
          return;
        }
      }
    } catch (err) {
      // the service may be restarting: try again
    }
    window.setTimeout(poll, 1000);
  };
  window.setTimeout(poll, 500);
});
