// The upload page: sends the chosen zip, files or folder to POST /api/v1/submissions with a progress bar, then
// opens the submission's page. Errors from the server are shown in the page in its own words.
"use strict";

(function () {
  const form = document.getElementById("upload");
  if (!form) return;
  const select = document.getElementById("case");
  const returns = document.getElementById("returns");
  const archive = document.getElementById("archive");
  const files = document.getElementById("files");
  const folder = document.getElementById("folder");
  const send = document.getElementById("send");
  const progress = document.getElementById("progress");
  const progressText = document.getElementById("progress-text");
  const error = document.getElementById("upload-error");
  const maxBytes = Number(form.dataset.maxBytes || 0);
  const MAX_FILES = 1000; // the server's multipart parser takes at most 1000 files

  function megabytes(bytes) {
    return (bytes / 1048576).toFixed(bytes < 10485760 ? 1 : 0) + " MB";
  }

  function showReturns() {
    const option = select.selectedOptions[0];
    const returned = option ? option.dataset.returned : "";
    returns.textContent = returned ? "For this case, send back: " + returned + "." : "";
  }

  function fail(message) {
    error.textContent = message;
    error.hidden = false;
    send.disabled = false;
    progress.hidden = true;
    progressText.textContent = "";
  }

  /** The server's answer as a sentence: FastAPI's "detail" is a string, or a list of problems. */
  function describe(status, body) {
    if (status === 401) return "Your sign-in has ended. Sign in again (reload this page), then send the files again.";
    const detail = body && body.detail;
    if (typeof detail === "string") return "The upload was refused: " + detail + ".";
    if (Array.isArray(detail) && detail.length) {
      const parts = detail.map(function (p) {
        if (typeof p === "string") return p;
        const where = Array.isArray(p.loc) ? p.loc[p.loc.length - 1] + ": " : "";
        return where + (p.message || p.msg || JSON.stringify(p));
      });
      return "The upload was refused: " + parts.join("; ") + ".";
    }
    if (status === 413) return "The upload is larger than the server accepts; send the submission in parts.";
    return "The server answered " + status + "; try again, or tell the QA team if it keeps happening.";
  }

  select.addEventListener("change", showReturns);
  showReturns();
  document.getElementById("clear").addEventListener("click", function () {
    archive.value = "";
    files.value = "";
    folder.value = "";
  });

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    error.hidden = true;
    const caseCode = select.value;
    const zip = Array.from(archive.files);
    const many = Array.from(files.files).concat(Array.from(folder.files));
    if (!caseCode) return fail("Choose the case this submission is for.");
    if (zip.length && many.length) return fail("Choose either one zip file or the files (or a folder), not both.");
    if (!zip.length && !many.length) return fail("Choose a zip file, the files or a folder to send.");
    if (many.length > MAX_FILES) {
      return fail("You chose " + many.length + " files; at most " + MAX_FILES + " can be sent at a time. " +
        "Zip the folder and send the zip instead.");
    }
    const total = zip.concat(many).reduce(function (sum, f) { return sum + f.size; }, 0);
    if (maxBytes && total > maxBytes) {
      return fail("The files add up to " + megabytes(total) + ", more than the " + megabytes(maxBytes) +
        " the server accepts; send the submission in parts or ask the QA team.");
    }

    const data = new FormData();
    data.append("case", caseCode);
    if (zip.length) {
      data.append("archive", zip[0], zip[0].name);
    } else {
      many.forEach(function (f) { data.append("files", f, f.webkitRelativePath || f.name); });
    }

    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/v1/submissions");
    xhr.setRequestHeader("X-CSRF-Token", rtqaCsrfToken());
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.onprogress = function (e) {
      if (!e.lengthComputable) return;
      const percent = Math.round((e.loaded / e.total) * 100);
      progress.value = percent;
      progressText.textContent = "Sent " + megabytes(e.loaded) + " of " + megabytes(e.total) + " (" + percent + "%)";
    };
    xhr.upload.onload = function () {
      progress.value = 100;
      progressText.textContent = "Sent. The server is unpacking and storing the files…";
    };
    xhr.onload = function () {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
      if ((xhr.status === 202 || xhr.status === 200) && body && body.submission_id) {
        try {
          sessionStorage.setItem("rtqa-upload-" + body.submission_id,
            JSON.stringify({ created: xhr.status === 202, attempt: body.attempt, warnings: body.warnings || [] }));
        } catch (e) { /* storage may be off: the submission page works without the note */ }
        progressText.textContent = "Received as submission " + body.submission_id + ". Opening its page…";
        window.location.assign("/submissions/" + body.submission_id);
        return;
      }
      fail(describe(xhr.status, body));
    };
    xhr.onerror = function () {
      fail("The upload did not reach the server. Check your connection and try again.");
    };
    send.disabled = true;
    progress.hidden = false;
    progress.value = 0;
    progressText.textContent = "Starting the upload…";
    xhr.send(data);
  });
})();
