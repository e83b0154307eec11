// objdet annotate: the labelling page. Plain ES module, no build step.
// Boxes are [x1, y1, x2, y2] in image pixels everywhere; the SVG overlay's viewBox is the
// image's pixel grid, so pointer positions convert with getScreenCTM().
import { api } from "./api.js";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const MIN_BOX = 2; // pixels: a smaller drag is a click, not a box

const state = {
  session: new URLSearchParams(location.search).get("session") || localStorage.getItem("objdet-session") || "default",
  labels: [],          // [{id, name}]
  currentLabel: null,  // label name for new boxes
  task: null,          // the task shown
  boxes: [],           // [{box, label, score, source, rejected}]
  selected: -1,
  history: [],         // task ids answered in this page, oldest first
  historyIndex: -1,    // >= 0 while revisiting history[historyIndex]
  undo: [],            // snapshots {task, boxes, selected}
  redo: [],
  busy: false,
};

// -- state helpers -----------------------------------------------------------------------
const threshold = () => Number($("threshold").value);
const copyBoxes = (boxes) => boxes.map((b) => ({ ...b, box: [...b.box] }));
const snapshot = () => ({ task: state.task, boxes: copyBoxes(state.boxes), selected: state.selected });
const visible = (b) => !b.rejected && (b.source !== "suggested" || b.score === null || b.score >= threshold());

function remember() {
  state.undo.push(snapshot());
  if (state.undo.length > 500) state.undo.shift();
  state.redo = [];
}

function restore(shot) {
  state.task = shot.task;
  state.boxes = copyBoxes(shot.boxes);
  state.selected = shot.selected;
  showTask(false);
}

function say(text, ok = false) {
  $("message").textContent = text;
  $("message").className = ok ? "ok" : "";
}

// -- loading tasks -----------------------------------------------------------------------
function boxesOfTask(task) {
  if (task.previous_answer) {
    return task.previous_answer.boxes.map((b) => ({ box: [...b.box_xyxy], label: b.label, score: null, source: b.source, rejected: false }));
  }
  return task.boxes.map((b) => ({ box: [...b.box_xyxy], label: b.label, score: b.score, source: "suggested", rejected: false }));
}

async function loadNext() {
  const task = await api.next(state.session);
  state.historyIndex = -1;
  if (task === null) {
    state.task = null;
    state.boxes = [];
    showTask(true);
    return;
  }
  state.task = task;
  state.boxes = boxesOfTask(task);
  state.selected = -1;
  showTask(true);
}

async function loadHistory(index) {
  const task = await api.task(state.history[index], state.session);
  state.historyIndex = index;
  state.task = task;
  state.boxes = boxesOfTask(task);
  state.selected = -1;
  showTask(true);
}

function showTask(newImage) {
  const done = state.task === null;
  $("done").hidden = !done;
  $("canvas").hidden = done;
  if (done) { render(); return; }
  const image = $("image");
  const overlay = $("overlay");
  overlay.setAttribute("viewBox", `0 0 ${state.task.width} ${state.task.height}`);
  overlay.setAttribute("preserveAspectRatio", "none");
  fitImage();
  if (newImage || image.dataset.taskId !== String(state.task.task_id)) {
    image.dataset.taskId = String(state.task.task_id);
    image.src = state.task.image;
  }
  const revisiting = state.historyIndex >= 0 ? " (answered before: answering again replaces it)" : "";
  $("task-info").textContent = `${state.task.key} · ${state.task.width}×${state.task.height} · suggestions from ${state.task.model_name === "none" ? "no model yet" : `model ${state.task.model_name}`}${revisiting}`;
  render();
}

function fitImage() {
  // small images are scaled up to the space there is; large ones down
  if (!state.task) return;
  const stage = $("stage").getBoundingClientRect();
  const availableWidth = Math.max(200, stage.width);
  const availableHeight = Math.max(200, window.innerHeight - stage.top - 16);
  const scale = Math.min(availableWidth / state.task.width, availableHeight / state.task.height);
  $("image").style.width = `${Math.floor(state.task.width * scale)}px`;
  $("image").style.height = `${Math.floor(state.task.height * scale)}px`;
}

// -- drawing -----------------------------------------------------------------------------
function render() {
  const overlay = $("overlay");
  overlay.replaceChildren();
  const list = $("box-list");
  list.replaceChildren();
  if (!state.task) return;
  const scale = Math.max(state.task.width, state.task.height);
  const fontSize = Math.max(10, scale / 45);
  const handle = Math.max(4, scale / 90);
  // the selected box is drawn last, on top, so a drag on it moves it even where boxes overlap
  const order = state.boxes.map((_, index) => index).filter((index) => index !== state.selected);
  if (state.boxes[state.selected]) order.push(state.selected);
  order.forEach((index) => {
    const b = state.boxes[index];
    if (!visible(b)) return;
    const [x1, y1, x2, y2] = b.box;
    const rect = document.createElementNS(SVG, "rect");
    Object.entries({ x: x1, y: y1, width: x2 - x1, height: y2 - y1 }).forEach(([k, v]) => rect.setAttribute(k, v));
    rect.classList.add("box");
    if (index === state.selected) rect.classList.add("selected");
    rect.dataset.index = index;
    rect.dataset.label = b.label;
    rect.dataset.source = b.source;
    overlay.append(rect);
    const tag = document.createElementNS(SVG, "text");
    tag.setAttribute("x", x1 + 2);
    tag.setAttribute("y", Math.max(fontSize, y1 - 3));
    tag.setAttribute("font-size", fontSize);
    tag.classList.add("tag");
    tag.textContent = b.score === null || b.source !== "suggested" ? b.label : `${b.label} ${b.score.toFixed(2)}`;
    overlay.append(tag);
    if (index === state.selected) {
      for (const [corner, cx, cy] of [["nw", x1, y1], ["ne", x2, y1], ["sw", x1, y2], ["se", x2, y2]]) {
        const h = document.createElementNS(SVG, "rect");
        Object.entries({ x: cx - handle / 2, y: cy - handle / 2, width: handle, height: handle }).forEach(([k, v]) => h.setAttribute(k, v));
        h.classList.add("handle");
        h.dataset.corner = corner;
        h.dataset.index = index;
        overlay.append(h);
      }
    }
  });
  state.boxes.forEach((b, index) => {
    if (!visible(b)) return;
    const item = document.createElement("li");
    item.textContent = `${b.label} ${b.score === null || b.source !== "suggested" ? `(${b.source})` : b.score.toFixed(2)} [${b.box.map(Math.round).join(", ")}]`;
    if (index === state.selected) item.className = "selected";
    item.onclick = () => { state.selected = index; render(); };
    list.append(item);
  });
  renderLabels();
}

function renderLabels() {
  const holder = $("labels");
  holder.replaceChildren();
  const selected = state.boxes[state.selected];
  const active = selected ? selected.label : state.currentLabel;
  state.labels.forEach((label, index) => {
    const span = document.createElement("span");
    span.textContent = index < 9 ? `${index + 1} ${label.name}` : label.name;
    if (label.name === active) span.className = "current";
    span.onclick = () => setLabel(label.name);
    holder.append(span);
  });
}

// -- editing -----------------------------------------------------------------------------
function setLabel(name) {
  const selected = state.boxes[state.selected];
  if (!selected) { state.currentLabel = name; renderLabels(); return; }
  if (selected.label === name) return;
  remember();
  selected.label = name;
  if (selected.source === "suggested") selected.source = "edited";
  render();
}

function rejectSelected() {
  if (!state.boxes[state.selected]) { say("select a box first (click it or press Tab)"); return; }
  remember();
  state.boxes[state.selected].rejected = true;
  state.selected = -1;
  render();
}

function selectNext() {
  const shown = state.boxes.map((b, i) => (visible(b) ? i : -1)).filter((i) => i >= 0);
  if (!shown.length) return;
  const at = shown.indexOf(state.selected);
  state.selected = shown[(at + 1) % shown.length];
  render();
}

function pointerPosition(event) {
  const overlay = $("overlay");
  const point = overlay.createSVGPoint();
  point.x = event.clientX;
  point.y = event.clientY;
  const p = point.matrixTransform(overlay.getScreenCTM().inverse());
  return [Math.min(Math.max(p.x, 0), state.task.width), Math.min(Math.max(p.y, 0), state.task.height)];
}

let drag = null; // {mode: "draw"|"move"|"resize", start, index, corner, original, element}

function onPointerDown(event) {
  if (!state.task || event.button !== 0) return;
  event.preventDefault();
  const [x, y] = pointerPosition(event);
  const target = event.target;
  $("overlay").setPointerCapture(event.pointerId);
  if (target.dataset.corner) {
    drag = { mode: "resize", start: [x, y], index: Number(target.dataset.index), corner: target.dataset.corner, before: snapshot() };
  } else if (target.classList.contains("box") && Number(target.dataset.index) === state.selected) {
    drag = { mode: "move", start: [x, y], index: state.selected, original: [...state.boxes[state.selected].box], before: snapshot() };
  } else {
    // on the background or an unselected box: a drag draws a new box, a click selects
    const index = target.classList.contains("box") ? Number(target.dataset.index) : -1;
    drag = { mode: "pending", start: [x, y], index };
  }
}

function startDrawing() {
  const draft = document.createElementNS(SVG, "rect");
  draft.classList.add("draft");
  $("overlay").append(draft);
  drag.mode = "draw";
  drag.element = draft;
}

function onPointerMove(event) {
  if (!drag) return;
  const [x, y] = pointerPosition(event);
  const [sx, sy] = drag.start;
  if (drag.mode === "pending") {
    if (Math.abs(x - sx) < MIN_BOX && Math.abs(y - sy) < MIN_BOX) return;
    startDrawing();
  }
  if (drag.mode === "draw") {
    const r = { x: Math.min(sx, x), y: Math.min(sy, y), width: Math.abs(x - sx), height: Math.abs(y - sy) };
    Object.entries(r).forEach(([k, v]) => drag.element.setAttribute(k, v));
    return;
  }
  const b = state.boxes[drag.index];
  if (drag.mode === "move") {
    const [x1, y1, x2, y2] = drag.original;
    const dx = Math.min(Math.max(x - sx, -x1), state.task.width - x2);
    const dy = Math.min(Math.max(y - sy, -y1), state.task.height - y2);
    b.box = [x1 + dx, y1 + dy, x2 + dx, y2 + dy];
  } else {
    if (drag.corner.includes("w")) b.box[0] = Math.min(x, b.box[2] - MIN_BOX);
    if (drag.corner.includes("e")) b.box[2] = Math.max(x, b.box[0] + MIN_BOX);
    if (drag.corner.includes("n")) b.box[1] = Math.min(y, b.box[3] - MIN_BOX);
    if (drag.corner.includes("s")) b.box[3] = Math.max(y, b.box[1] + MIN_BOX);
  }
  drag.moved = true;
  render();
}

function onPointerUp(event) {
  if (!drag) return;
  const finished = drag;
  drag = null;
  if (finished.mode === "pending") { // a click: select the box under it, or none
    state.selected = finished.index;
    render();
    return;
  }
  if (finished.mode === "draw") {
    finished.element.remove();
    const [x, y] = pointerPosition(event);
    const [sx, sy] = finished.start;
    if (Math.abs(x - sx) < MIN_BOX || Math.abs(y - sy) < MIN_BOX) {
      state.selected = -1; // a click on the background deselects
      render();
      return;
    }
    remember();
    const label = state.currentLabel || (state.labels[0] && state.labels[0].name);
    state.boxes.push({ box: [Math.min(sx, x), Math.min(sy, y), Math.max(sx, x), Math.max(sy, y)], label, score: null, source: "drawn", rejected: false });
    state.selected = state.boxes.length - 1;
    render();
    return;
  }
  if (finished.moved) {
    state.undo.push(finished.before);
    state.redo = [];
    const b = state.boxes[finished.index];
    if (b.source === "suggested") b.source = "edited";
    render();
  }
}

// -- answering and navigating ------------------------------------------------------------
async function answer(kind) {
  if (!state.task || state.busy) return;
  state.busy = true;
  try {
    const shown = state.boxes.filter(visible);
    const rejected = state.boxes.filter((b) => b.rejected && b.source !== "drawn").map((b) => b.box);
    await api.answer({
      task_id: state.task.task_id, session: state.session, answer: kind,
      model_version: state.task.model_version,
      boxes: shown.map((b) => ({ box_xyxy: b.box.map((v) => Math.round(v * 100) / 100), label: b.label, source: b.source })),
      rejected,
    });
    const before = snapshot();
    state.undo.push(before);
    state.redo = [];
    const id = state.task.task_id;
    if (state.historyIndex >= 0) {
      state.historyIndex = -1;
    } else {
      state.history.push(id);
    }
    say(`${kind === "accept" ? "accepted" : kind === "reject" ? "rejected" : "ignored"} ${state.task.key}`, true);
    await loadNext();
    refreshStatus();
  } catch (error) {
    say(String(error.message || error));
  } finally {
    state.busy = false;
  }
}

async function previous() {
  const index = state.historyIndex >= 0 ? state.historyIndex - 1 : state.history.length - 1;
  if (index < 0) { say("no earlier image in this session"); return; }
  await loadHistory(index);
}

async function next() {
  if (state.historyIndex < 0) { say("answer this image to move on (a accept, r reject, i ignore)"); return; }
  if (state.historyIndex + 1 < state.history.length) await loadHistory(state.historyIndex + 1);
  else await loadNext();
}

function undo() {
  if (!state.undo.length) { say("nothing to undo"); return; }
  state.redo.push(snapshot());
  const shot = state.undo.pop();
  if (shot.task && state.task && shot.task.task_id !== state.task.task_id) {
    const at = state.history.indexOf(shot.task.task_id);
    state.historyIndex = at;
    say(`back to ${shot.task.key}: answer it again to replace its answer`, true);
  }
  restore(shot);
}

function redo() {
  if (!state.redo.length) { say("nothing to redo"); return; }
  state.undo.push(snapshot());
  const shot = state.redo.pop();
  if (shot.task && state.task && shot.task.task_id !== state.task.task_id) {
    state.historyIndex = state.history.indexOf(shot.task.task_id);
  }
  restore(shot);
}

// -- status ------------------------------------------------------------------------------
async function refreshStatus() {
  try {
    const status = await api.status(state.session); // renews this session's lease
    if (!state.labels.length) {
      state.labels = status.labels;
      state.currentLabel = state.labels.length ? state.labels[0].name : null;
      renderLabels();
    }
    const trainer = status.trainer || {};
    const parts = [`${status.answered} / ${status.total} answered`, status.model_version > 0 ? `model v${status.model_version}` : status.model_name === "none" ? "no model yet" : status.model_name];
    if (trainer.loss !== undefined && trainer.loss !== null) parts.push(`loss ${trainer.loss.toFixed(3)}`);
    if (status.eval_input) parts.push(`AP@0.5 ${trainer.ap50 === undefined || trainer.ap50 === null ? "–" : trainer.ap50.toFixed(3)}`);
    parts.push(`trainer ${trainer.state || "off"}${trainer.error ? ` (${trainer.error})` : ""}`);
    if (status.bad_images) parts.push(`${status.bad_images} bad image(s) skipped`);
    $("progress").textContent = parts.join(" · ");
    $("progress").title = (status.bad_examples || []).join("\n");
    if (state.task && state.task.model_version < status.model_version && state.historyIndex < 0 && !state.undo.some((s) => s.task === state.task)) {
      // a newer model is serving: the untouched current image gets its suggestions
      const task = await api.next(state.session);
      if (task && task.task_id === state.task.task_id) { state.task = task; state.boxes = boxesOfTask(task); showTask(false); }
    }
  } catch (error) {
    say(`status: ${error.message || error}`);
  }
}

// -- wiring ------------------------------------------------------------------------------
function onKey(event) {
  if (event.target.tagName === "INPUT" && event.target.type !== "range") return;
  const ctrl = event.ctrlKey || event.metaKey;
  const key = event.key;
  let handled = true;
  if (ctrl && (key === "z" || key === "Z")) { if (event.shiftKey) redo(); else undo(); }
  else if (ctrl && key === "y") redo();
  else if (ctrl) handled = false;
  else if (key === "a" || key === "Enter") answer("accept");
  else if (key === "r") answer("reject");
  else if (key === "i") answer("ignore");
  else if (key === "x" || key === "Delete" || key === "Backspace") rejectSelected();
  else if (key === "ArrowLeft" || key === "p") previous();
  else if (key === "ArrowRight" || key === "n") next();
  else if (key === "Tab") selectNext();
  else if (key === "Escape") { state.selected = -1; render(); }
  else if (/^[1-9]$/.test(key) && state.labels[Number(key) - 1]) setLabel(state.labels[Number(key) - 1].name);
  else handled = false;
  if (handled) event.preventDefault();
}

function start() {
  api.setToken(new URLSearchParams(location.search).get("token"));
  $("session").value = state.session;
  $("session").onchange = () => {
    state.session = $("session").value.trim() || "default";
    localStorage.setItem("objdet-session", state.session);
    state.history = []; state.historyIndex = -1; state.undo = []; state.redo = [];
    loadNext();
  };
  $("threshold").oninput = () => { $("threshold-value").textContent = threshold().toFixed(2); render(); };
  $("accept").onclick = () => answer("accept");
  $("reject-image").onclick = () => answer("reject");
  $("ignore").onclick = () => answer("ignore");
  $("previous").onclick = previous;
  $("next").onclick = next;
  $("undo").onclick = undo;
  $("redo").onclick = redo;
  const overlay = $("overlay");
  overlay.addEventListener("pointerdown", onPointerDown);
  overlay.addEventListener("pointermove", onPointerMove);
  overlay.addEventListener("pointerup", onPointerUp);
  $("image").onerror = () => say(`the browser cannot show ${state.task ? state.task.key : "this image"}: press i to ignore it`);
  document.addEventListener("keydown", onKey);
  window.addEventListener("resize", fitImage);
  refreshStatus().then(loadNext).catch((error) => say(String(error.message || error)));
  setInterval(refreshStatus, 3000);
}

window.objdetAnnotate = state; // for tests and the console
start();
