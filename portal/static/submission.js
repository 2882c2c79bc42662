// A submission's page: polls GET /api/v1/submissions/{id} every 2 s and moves the steps along; once the
// submission is decided or rejected the page is loaded again once, to show the outcome and its reasons.
"use strict";

(function () {
  const section = document.getElementById("submission");
  if (!section) return;
  const id = section.dataset.id;
  const ORDER = ["received", "validated", "scored", "decided"];
  const WORDS = { received: "received", validated: "checked", scored: "scored", decided: "decided", rejected: "rejected" };
  const live = document.getElementById("live");
  const badge = document.getElementById("status");

  // The upload page leaves its answer (message and ignored files) for this page.
  try {
    const key = "rtqa-upload-" + id;
    const note = JSON.parse(sessionStorage.getItem(key) || "null");
    if (note) {
      // Kept until the outcome is shown: the page loads once more when the submission is finished.
      if (section.dataset.final === "true") sessionStorage.removeItem(key);
      const box = document.getElementById("upload-note");
      const p = document.createElement("p");
      p.textContent = note.created
        ? "Your upload was received as attempt " + note.attempt + "."
        : "These files were already received as this submission (attempt " + note.attempt + "); nothing new was stored.";
      box.appendChild(p);
      if (note.warnings && note.warnings.length) {
        const ignored = document.createElement("p");
        ignored.textContent = "Files left out of the submission:";
        box.appendChild(ignored);
        const ul = document.createElement("ul");
        note.warnings.forEach(function (w) { const li = document.createElement("li"); li.textContent = w; ul.appendChild(li); });
        box.appendChild(ul);
      }
      box.hidden = false;
    }
  } catch (e) { /* storage may be off */ }

  if (section.dataset.final === "true") return;

  function show(status) {
    badge.textContent = WORDS[status] || status;
    badge.className = "status " + status;
    const reached = ORDER.indexOf(status);
    section.querySelectorAll("ol.steps li").forEach(function (li) {
      const step = li.dataset.step;
      if (step === "rejected") { li.hidden = status !== "rejected"; return; }
      const n = ORDER.indexOf(step);
      if (status === "rejected") li.className = n === 0 ? "done" : "skipped";
      else li.className = n <= reached ? "done" : n === reached + 1 ? "current" : "todo";
    });
  }

  function poll() {
    fetch("/api/v1/submissions/" + id, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) {
        if (r.status === 401) throw new Error("Your sign-in has ended; reload the page to sign in again.");
        if (!r.ok) throw new Error("The server answered " + r.status + "; reload the page later.");
        return r.json();
      })
      .then(function (body) {
        if (body.status !== section.dataset.status) {
          section.dataset.status = body.status;
          show(body.status);
        }
        if (body.status === "decided" || body.status === "rejected") {
          live.textContent = "Finished; loading the outcome…";
          window.location.reload();
          return;
        }
        setTimeout(poll, 2000);
      })
      .catch(function (err) {
        if (err instanceof TypeError) { setTimeout(poll, 2000); return; } // network hiccup: keep trying
        live.textContent = err.message;
      });
  }
  setTimeout(poll, 2000);
})();
