// loreg pages: progressive enhancement only. Every page works without this file;
// it adds live job updates (polling /jobs/<id>/live) and copy buttons.
"use strict";

(function () {
  const POLL_MS = 1000;

  function setStatus(cell, status, cancelRequested, done) {
    const badge = document.createElement("span");
    badge.className = "status status-" + status;
    badge.textContent = status;
    cell.replaceChildren(badge);
    if (cancelRequested && !done) {
      const extra = document.createElement("span");
      extra.className = "badge warn";
      extra.textContent = "cancel requested";
      cell.append(" ", extra);
    }
  }

  // an ISO timestamp as the pages' "when" filter writes it: "2026-01-02 03:04 UTC"
  function when(iso) {
    return iso.replace("T", " ").slice(0, 16) + " UTC";
  }

  function field(root, name) {
    return root.querySelector('[data-field="' + name + '"]');
  }

  function apply(root, job) {
    const status = field(root, "status");
    if (status) setStatus(status, job.status, job.cancel_requested, job.done);
    const progress = field(root, "progress");
    if (progress) {
      progress.value = job.progress || 0;
      progress.textContent = Math.round((job.progress || 0) * 100) + "%";
    }
    const message = field(root, "message");
    if (message) message.textContent = job.message || "";
    const error = field(root, "error");
    if (error) error.textContent = job.error || "–";
    const log = field(root, "log_tail");
    if (log) {
      // keep following the newest lines unless the reader scrolled up
      const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
      log.textContent = job.log_tail || "";
      if (atEnd) log.scrollTop = log.scrollHeight;
    }
    const attempts = field(root, "attempts");
    if (attempts && job.attempts != null) attempts.textContent = String(job.attempts);
    const started = field(root, "started_at");
    if (started && job.started_at) started.textContent = when(job.started_at);
    const finished = field(root, "finished_at");
    if (finished && job.finished_at) finished.textContent = when(job.finished_at);
    const result = field(root, "result");
    if (result && job.result_ref) {
      if (job.result_href) {
        const link = document.createElement("a");
        link.href = job.result_href;
        link.textContent = job.result_ref;
        result.replaceChildren(link);
      } else {
        result.textContent = job.result_ref;
      }
    }
    if (job.done) {
      root.removeAttribute("data-live-job");
      root.querySelectorAll("[data-hide-when-done]").forEach((el) => el.remove());
    }
  }

  function watch(root) {
    const id = root.getAttribute("data-live-job");
    const tick = () => {
      fetch("/jobs/" + encodeURIComponent(id) + "/live", {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      })
        .then((r) => (r.ok ? r.json() : Promise.reject(r.status)))
        .then((job) => {
          apply(root, job);
          if (!job.done) setTimeout(tick, POLL_MS);
        })
        .catch(() => setTimeout(tick, POLL_MS * 5));
    };
    setTimeout(tick, POLL_MS);
  }

  function copyButtons() {
    document.querySelectorAll("button[data-copy]").forEach((button) => {
      button.addEventListener("click", () => {
        const source = document.getElementById(button.getAttribute("data-copy"));
        if (!source || !navigator.clipboard) return;
        navigator.clipboard.writeText(source.textContent).then(() => {
          button.textContent = "Copied";
          setTimeout(() => (button.textContent = "Copy"), 1500);
        });
      });
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll(".log").forEach((log) => (log.scrollTop = log.scrollHeight));
    document.querySelectorAll("[data-live-job]").forEach(watch);
    copyButtons();
  });
})();
