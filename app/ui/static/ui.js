// EndoSeek QA: small progressive enhancements; every page also works without JavaScript.
"use strict";

function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

// Drag and drop onto upload and search forms: dropped files fill the form's file input.
function setupDropzones() {
  document.querySelectorAll("form[data-dropzone]").forEach((form) => {
    const input = form.querySelector('input[type="file"]');
    const preview = form.querySelector("[data-preview]");
    const showPreview = () => {
      if (!preview || !input.files.length) return;
      preview.src = URL.createObjectURL(input.files[0]);
      preview.alt = "Preview of the chosen photo";
      preview.hidden = false;
    };
    input.addEventListener("change", showPreview);
    form.addEventListener("dragover", (e) => { e.preventDefault(); form.classList.add("is-dragover"); });
    form.addEventListener("dragleave", () => form.classList.remove("is-dragover"));
    form.addEventListener("drop", (e) => {
      e.preventDefault();
      form.classList.remove("is-dragover");
      if (!e.dataTransfer || !e.dataTransfer.files.length) return;
      const dt = new DataTransfer();
      const files = input.multiple ? Array.from(e.dataTransfer.files) : [e.dataTransfer.files[0]];
      files.forEach((f) => dt.items.add(f));
      input.files = dt.files;
      showPreview();
    });
  });
}

// Selects marked data-autosubmit (e.g. the standard picker) submit their form when an option
// is picked with the pointer. From the keyboard the arrow keys only move the choice (WCAG
// 3.2.2: no page change on input) and Enter, or the form's Show button, applies it.
function setupAutosubmit() {
  document.querySelectorAll("select[data-autosubmit]").forEach((sel) => {
    let keyboard = false;
    sel.addEventListener("pointerdown", () => { keyboard = false; });
    sel.addEventListener("keydown", (e) => {
      keyboard = true;
      if (e.key === "Enter") {
        e.preventDefault();
        sel.form.submit();
      }
    });
    sel.addEventListener("change", () => { if (!keyboard) sel.form.submit(); });
  });
}

// Jobs table: poll JSON every 2 s while any job is pending or running.
function renderJob(row, job) {
  row.querySelector('[data-field="status"]').textContent = job.status;
  row.querySelector('[data-field="status"]').className = "badge badge-job-" + job.status;
  const bar = row.querySelector("progress");
  bar.max = job.total || 1;
  bar.value = job.done + job.failed;
  const failed = job.failed ? " (" + job.failed + " failed)" : "";
  row.querySelector('[data-field="count"]').textContent = job.done + " / " + job.total + failed;
}

function setupJobPolling() {
  const table = document.querySelector("table[data-poll]");
  if (!table) return;
  const tick = async () => {
    let busy = false;
    try {
      const resp = await fetch(table.dataset.poll, {
        headers: { Accept: "application/json", "X-CSRF-Token": csrfToken() },
        credentials: "same-origin",
      });
      if (!resp.ok) return;
      const data = await resp.json();
      const known = new Set();
      data.jobs.forEach((job) => {
        known.add(job.id);
        let row = table.querySelector('tr[data-job="' + job.id + '"]');
        if (!row) {
          row = document.createElement("tr");
          row.dataset.job = job.id;
          row.innerHTML = '<td></td><td><span data-field="status"></span></td>' +
            '<td><progress></progress> <span data-field="count"></span></td>';
          row.cells[0].textContent = job.kind;
          row.querySelector("progress").setAttribute("aria-label", job.kind + " progress");
          const empty = table.querySelector(".empty-row");
          if (empty) empty.remove();
          table.tBodies[0].prepend(row);
        }
        renderJob(row, job);
        if (job.status === "pending" || job.status === "running") busy = true;
      });
    } finally {
      setTimeout(tick, busy ? 1000 : 2000);
    }
  };
  tick();
}

// Video page: stills, timeline markers and a click on the timeline play from their moment;
// a playhead follows the player. Links keep working without JavaScript (?t=...#player).
function setupVideo() {
  const player = document.querySelector("video[data-player]");
  if (!player) return;
  const seek = (t) => {
    const go = () => {
      player.currentTime = t;
      player.play().catch(() => {}); // playback may be refused; the position is still set
    };
    if (player.readyState >= 1) go();
    else player.addEventListener("loadedmetadata", go, { once: true });
    player.scrollIntoView({ block: "nearest" });
  };
  document.querySelectorAll("[data-seek]").forEach((el) => {
    el.addEventListener("click", (e) => {
      e.preventDefault();
      seek(parseFloat(el.dataset.seek));
    });
  });
  const svg = document.querySelector("svg.timeline");
  if (!svg) return;
  const x0 = parseFloat(svg.dataset.x0);
  const plotW = parseFloat(svg.dataset.plotW);
  const duration = parseFloat(svg.dataset.duration);
  const width = parseFloat(svg.dataset.width);
  const head = svg.querySelector("[data-playhead]");
  player.addEventListener("timeupdate", () => {
    if (!head || !duration) return;
    const x = x0 + Math.min(player.currentTime / duration, 1) * plotW;
    head.setAttribute("x1", x);
    head.setAttribute("x2", x);
    head.setAttribute("visibility", "visible");
  });
  // a click anywhere on the plot (not on a marker, which seeks to its still) seeks there
  svg.addEventListener("click", (e) => {
    if (e.defaultPrevented || e.target.closest("a")) return;
    const box = svg.getBoundingClientRect();
    const x = ((e.clientX - box.left) * width) / box.width;
    if (x < x0 || x > x0 + plotW) return;
    seek(Math.min(Math.max(((x - x0) / plotW) * duration, 0), duration));
  });
}

// Videos being analysed: poll their status every 2 s; reload the page once one has ended
// (its timeline, stills and the procedure's photos then appear).
function setupVideoPolling() {
  document.querySelectorAll("[data-video-poll]").forEach((box) => {
    const tick = async () => {
      let again = true;
      try {
        const resp = await fetch(box.dataset.videoPoll, {
          headers: { Accept: "application/json" },
          credentials: "same-origin",
        });
        if (!resp.ok) return;
        const p = await resp.json();
        if (p.status !== "queued" && p.status !== "analysing") {
          again = false;
          window.location.reload();
          return;
        }
        const bar = box.querySelector("progress");
        if (bar && p.total) {
          bar.max = p.total;
          bar.value = p.done || 0;
        }
        const count = box.querySelector('[data-field="count"]');
        if (count && p.total) count.textContent = (p.done || 0) + " / " + p.total + " frames";
        const eta = box.querySelector('[data-field="eta"]');
        if (eta) eta.textContent = p.eta_s == null ? "" : "· about " + clock(p.eta_s) + " left";
        const status = document.querySelector("#video-status") || box.querySelector('[data-field="status"]');
        if (status) {
          status.textContent = p.status;
          status.className = "badge badge-video-" + p.status;
        }
      } finally {
        if (again) setTimeout(tick, 2000);
      }
    };
    setTimeout(tick, 2000);
  });
}

function clock(seconds) {
  const total = Math.round(seconds);
  const m = Math.floor(total / 60);
  const s = total % 60;
  return m + ":" + (s < 10 ? "0" : "") + s;
}

// Guided labelling: in a [data-labelling] list, J / K move between photos and a label's key
// (shown in each photo's list as [key]) labels the photo that holds the focus at once.
function setupLabelShortcuts() {
  const lists = document.querySelectorAll("[data-labelling]");
  if (!lists.length) return;
  const cards = () => Array.from(document.querySelectorAll("[data-labelling] > li"));
  cards().forEach((card) => { if (!card.hasAttribute("tabindex")) card.tabIndex = -1; });
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const el = document.activeElement;
    if (el && (el.tagName === "INPUT" || el.tagName === "TEXTAREA" || el.tagName === "SELECT")) return;
    const card = el && el.closest ? el.closest("[data-labelling] > li") : null;
    const all = cards();
    const key = e.key.toLowerCase();
    if (key === "j" || key === "k") {
      const at = card ? all.indexOf(card) : -1;
      const next = all[key === "j" ? Math.min(at + 1, all.length - 1) : Math.max(at - 1, 0)];
      if (next) { next.focus(); next.scrollIntoView({ block: "nearest" }); e.preventDefault(); }
      return;
    }
    if (!card) return;
    const form = card.querySelector("form[data-label-form]");
    const option = form && form.querySelector('option[data-key="' + CSS.escape(key) + '"]');
    if (!option) return;
    e.preventDefault();
    form.querySelector("select").value = option.value;
    form.submit();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  setupDropzones();
  setupAutosubmit();
  setupJobPolling();
  setupVideo();
  setupVideoPolling();
  setupLabelShortcuts();
});
