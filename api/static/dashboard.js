// The dashboard's only script: live updates by polling server-rendered fragments, and the forms and buttons
// that change things, which call the JSON API with the page's CSRF token.
"use strict";

const csrf = () => document.querySelector('meta[name="csrf-token"]').content;
const FINISHED = ["succeeded", "failed", "cancelled"];

async function api(method, url, body) {
  const response = await fetch(url, {
    method, credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  return { ok: response.ok, status: response.status, data };
}

function every(ms, fn) {
  const tick = async () => {
    if (!document.hidden) {
      try { if (await fn() === false) return; } catch (e) { /* a missed poll is retried on the next tick */ }
    }
    setTimeout(tick, ms);
  };
  setTimeout(tick, ms);
}

// Elements with data-live="URL" are replaced by that fragment every data-every ms (2 s by default).
for (const el of document.querySelectorAll("[data-live]")) {
  every(Number(el.dataset.every || 2000), async () => {
    const response = await fetch(el.dataset.live, { credentials: "same-origin" });
    if (response.ok) el.innerHTML = await response.text();
  });
}

// A job's page while it is queued or running: its head and parts follow the server; once it has finished,
// the whole page is re-rendered (its results appear).
const head = document.querySelector("[data-job-live]");
if (head && !FINISHED.includes(head.dataset.status)) {
  every(1500, async () => {
    const response = await fetch(location.href, { credentials: "same-origin" });
    if (!response.ok) return;
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = page.querySelector("[data-job-live]");
    if (FINISHED.includes(fresh.dataset.status)) {
      document.querySelector("main").replaceWith(page.querySelector("main"));
      return false;
    }
    head.innerHTML = fresh.innerHTML;
    head.dataset.status = fresh.dataset.status;
    const parts = document.getElementById("job-parts"), freshParts = page.getElementById("job-parts");
    if (freshParts && parts) parts.innerHTML = freshParts.innerHTML;
    else if (freshParts) head.after(freshParts);
    const sweep = document.getElementById("sweep-result"), freshSweep = page.getElementById("sweep-result");
    if (sweep && freshSweep) sweep.innerHTML = freshSweep.innerHTML;  // a sweep's trials as they arrive
  });
}

function value(input) {
  const type = input.dataset.type;
  if (input.dataset.checkbox !== undefined) return input.checked;
  const text = input.value.trim();
  if (text === "") return undefined;
  if (type === "integer" || type === "number") return Number(text);
  if (type === "boolean") return text === "true";
  if (type === "array") return text.split(input.dataset.separator === "lines" ? "\n" : ",").map((s) => s.trim()).filter(Boolean);
  return text;
}

document.addEventListener("submit", async (event) => {
  const form = event.target.closest("form.submit-job");
  if (!form) return;
  event.preventDefault();
  for (const el of form.querySelectorAll("[data-error-for]")) el.textContent = "";
  const banner = form.querySelector(".form-error");
  banner.hidden = true;
  const params = {};
  const request = { kind: form.getAttribute("data-kind"), params };
  for (const input of form.querySelectorAll("[name]")) {
    const v = value(input);
    if (v !== undefined) (input.dataset.topLevel !== undefined ? request : params)[input.name] = v;
  }
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  const { ok, status, data } = await api("POST", "/jobs", request);
  button.disabled = false;
  if (ok) { location.href = "/ui/jobs/" + data.id; return; }
  const detail = (data && data.detail) || { message: "the request failed (HTTP " + status + ")", errors: [] };
  let placed = 0;
  for (const e of detail.errors || []) {
    const field = String(e.field || "").replace(/^params\./, "").split(".")[0];
    const slot = form.querySelector('[data-error-for="' + CSS.escape(field) + '"]');
    if (slot) { slot.textContent = e.message; placed += 1; }
  }
  if (!placed || status !== 422) { banner.textContent = detail.message; banner.hidden = false; }
});

document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-cancel]");
  if (!button) return;
  button.disabled = true;
  const { ok, data } = await api("POST", "/jobs/" + button.dataset.cancel + "/cancel");
  if (!ok) { alert((data && data.detail && data.detail.message) || "cancel failed"); button.disabled = false; return; }
  button.remove();
});

document.addEventListener("submit", async (event) => {
  const form = event.target.closest("form.edit-labels");
  if (!form) return;
  event.preventDefault();
  const before = form.dataset.tags ? form.dataset.tags.split(",") : [];
  const after = form.elements.tags.value.split(",").map((t) => t.trim()).filter(Boolean);
  const { ok, data } = await api("PATCH", "/jobs/" + form.dataset.job, {
    name: form.elements.name.value.trim(), note: form.elements.note.value.trim(),
    add_tags: after.filter((t) => !before.includes(t)), remove_tags: before.filter((t) => !after.includes(t)),
  });
  const banner = form.querySelector(".form-error");
  if (ok) { location.reload(); return; }
  banner.textContent = (data && data.detail && data.detail.message) || "the change failed";
  banner.hidden = false;
});

// "Try an image": the chosen or dropped files go to POST /predict as multipart; the answers fill a table.
const dropZone = document.getElementById("drop-zone");
if (dropZone) {
  const input = document.getElementById("predict-files");
  dropZone.addEventListener("dragover", (event) => { event.preventDefault(); dropZone.classList.add("dragging"); });
  dropZone.addEventListener("dragleave", () => dropZone.classList.remove("dragging"));
  dropZone.addEventListener("drop", (event) => {
    event.preventDefault();
    dropZone.classList.remove("dragging");
    input.files = event.dataTransfer.files;
  });
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
  return td;
}

document.addEventListener("submit", async (event) => {
  const form = event.target.closest("form.predict");
  if (!form) return;
  event.preventDefault();
  const banner = form.querySelector(".form-error");
  banner.hidden = true;
  const body = new FormData();
  for (const file of form.elements.file.files) body.append("file", file);
  const query = new URLSearchParams({ model: form.elements.model.value, gradcam: form.elements.gradcam.checked });
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  const response = await fetch("/predict?" + query, {
    method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrf() }, body,
  });
  button.disabled = false;
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  if (!response.ok) {
    banner.textContent = (data && data.detail && data.detail.message) || "the request failed (HTTP " + response.status + ")";
    banner.hidden = false;
    return;
  }
  const section = document.getElementById("predict-results");
  document.getElementById("predict-model-used").textContent = "with " + data.model;
  const tbody = section.querySelector("tbody");
  tbody.replaceChildren();
  for (const p of data.predictions) {
    const row = document.createElement("tr");
    cell(row, p.file);
    if (p.error) {
      cell(row, p.error).colSpan = 6;
    } else {
      cell(row, p.predicted);
      cell(row, p.confidence.toFixed(4));
      cell(row, p.decision);
      cell(row, p.prediction_set ? p.prediction_set.join(", ") : "–");
      cell(row, p.top_k.map(([c, v]) => c + " " + v.toFixed(3)).join(", "));
      const td = cell(row, p.overlay_png ? "" : "–");
      if (p.overlay_png) {
        const img = document.createElement("img");
        img.className = "overlay";
        img.alt = "Grad-CAM overlay of " + p.file;
        img.src = "data:image/png;base64," + p.overlay_png;
        td.appendChild(img);
      }
    }
    tbody.appendChild(row);
  }
  section.hidden = false;
});
