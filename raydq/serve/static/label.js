// raydq labeling page: one batch at a time, keyboard first. Plain JS, no build step, nothing from other hosts.
// It calls the service's own endpoints (relative URLs, so a path prefix works) with the token from sessionStorage.
"use strict";

const RESERVED = { skip: "s", undo: "u" };
const CLASS_KEYS = "1234567890abcdefghijklmnopqrtvwxyz".split(""); // 1-9, 0, then letters but s and u
const TOKEN_KEY = "raydq-token";
const $ = (id) => document.getElementById(id);

const state = {
  classes: [], keyOf: new Map(), classOfKey: new Map(),
  batch: null, answers: new Map(), history: [], focus: 0, busy: false, canSkip: false, imageUrls: [],
};

// -- talking to the service --------------------------------------------------------------------------------------
function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY) || "";
  return token ? { Authorization: "Bearer " + token } : {};
}

async function api(method, path, body) {
  const init = { method, headers: { ...authHeaders() } };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = Array.isArray(data.detail)
      ? data.detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ")
      : data.detail || response.statusText;
    const error = new Error(`HTTP ${response.status}: ${detail}`);
    error.status = response.status;
    throw error;
  }
  return data;
}

async function imageUrl(itemId) {
  const response = await fetch(`items/${encodeURIComponent(itemId)}/image?size=256`, { headers: authHeaders() });
  if (!response.ok) throw new Error(`image of ${itemId}: HTTP ${response.status}`);
  const url = URL.createObjectURL(await response.blob());
  state.imageUrls.push(url);
  return url;
}

// -- rendering ---------------------------------------------------------------------------------------------------
function say(text, isError = false) {
  $("message").textContent = text;
  $("message").classList.toggle("error", isError);
}

function renderClasses() {
  const bar = $("classes");
  bar.replaceChildren();
  state.keyOf.clear();
  state.classOfKey.clear();
  state.classes.forEach((name, i) => {
    const key = CLASS_KEYS[i];
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.class = name;
    if (key) {
      state.keyOf.set(name, key);
      state.classOfKey.set(key, name);
      const kbd = document.createElement("kbd");
      kbd.textContent = key;
      button.append(kbd);
    }
    button.append(" " + name);
    button.addEventListener("click", () => answer(state.focus, { label: name }));
    bar.append(button);
  });
}

function tiles() {
  return Array.from($("grid").children);
}

function renderTile(i) {
  const tile = tiles()[i];
  const item = state.batch.items[i];
  const given = state.answers.get(item.id);
  tile.classList.toggle("labeled", Boolean(given && given.label));
  tile.classList.toggle("skipped", Boolean(given && given.skip));
  tile.querySelector(".answer").textContent = given ? (given.skip ? "skipped" : given.label) : "";
}

function renderProgress() {
  const total = state.batch ? state.batch.items.length : 0;
  $("progress").textContent = `${state.answers.size} / ${total}`;
}

async function renderBatch() {
  state.imageUrls.forEach((u) => URL.revokeObjectURL(u));
  state.imageUrls = [];
  const grid = $("grid");
  grid.replaceChildren();
  state.batch.items.forEach((item, i) => {
    const tile = document.createElement("figure");
    tile.className = "tile";
    tile.tabIndex = -1;
    tile.setAttribute("role", "gridcell");
    tile.dataset.id = item.id;
    const img = document.createElement("img");
    img.alt = item.id;
    const caption = document.createElement("figcaption");
    const id = document.createElement("span");
    id.className = "id";
    id.textContent = item.id;
    const given = document.createElement("span");
    given.className = "answer";
    caption.append(id, given);
    tile.append(img, caption);
    tile.addEventListener("click", () => setFocus(i));
    grid.append(tile);
    imageUrl(item.id).then((url) => { img.src = url; }).catch((e) => { img.alt = e.message; });
  });
  $("model-version").textContent = `v${state.batch.model_version}`;
  $("strategy").textContent = state.batch.strategy;
  renderProgress();
  setFocus(0);
}

function setFocus(i) {
  const all = tiles();
  if (!all.length) return;
  state.focus = Math.max(0, Math.min(all.length - 1, i));
  all.forEach((t, n) => { t.tabIndex = n === state.focus ? 0 : -1; });
  all[state.focus].focus();
}

function columns() {
  const all = tiles();
  if (!all.length) return 1;
  const top = all[0].offsetTop;
  const n = all.findIndex((t) => t.offsetTop !== top);
  return n === -1 ? all.length : n;
}

// -- answering ---------------------------------------------------------------------------------------------------
function answer(i, given) {
  if (!state.batch || state.busy) return;
  const item = state.batch.items[i];
  state.answers.set(item.id, given);
  state.history = state.history.filter((n) => n !== i);
  state.history.push(i);
  renderTile(i);
  renderProgress();
  const n = state.batch.items.length;
  for (let step = 1; step <= n; step++) {  // on to the next unanswered item
    const j = (i + step) % n;
    if (!state.answers.has(state.batch.items[j].id)) { setFocus(j); return; }
  }
  say("Every item is answered: Enter submits the batch.");
}

function undo() {
  if (!state.batch || state.busy || !state.history.length) return;
  const i = state.history.pop();
  state.answers.delete(state.batch.items[i].id);
  renderTile(i);
  renderProgress();
  setFocus(i);
}

async function submit() {
  if (!state.batch || state.busy) return;
  const items = state.batch.items;
  const missing = items.findIndex((item) => !state.answers.has(item.id));
  if (missing !== -1) {
    say(`${items.length - state.answers.size} item(s) still need an answer.`);
    setFocus(missing);
    return;
  }
  state.busy = true;
  try {
    const labels = [];
    const skipped = [];
    for (const item of items) {
      const given = state.answers.get(item.id);
      if (given.skip) skipped.push(item.id); else labels.push({ id: item.id, label: given.label });
    }
    const entries = state.canSkip ? [...labels, ...skipped.map((id) => ({ id, skip: true, reason: "skipped" }))]
      : labels;
    let result = null;
    if (entries.length) result = await api("POST", "update_labels", { labels: entries, batch_id: state.batch.batch_id });
    if (skipped.length && !state.canSkip) {  // an older service: hand the skipped items back
      await api("POST", "release_batch", { batch_id: state.batch.batch_id });
    }
    say(`Stored ${labels.length} label(s)` + (skipped.length ? `, ${skipped.length} skipped` : "") +
        (result ? `; ${result.labeled} labeled in total.` : "."));
    if (result) $("labeled").textContent = result.labeled;
  } catch (e) {
    say(e.message, true);
    state.busy = false;
    return;
  }
  state.busy = false;
  await nextBatch();
}

async function nextBatch() {
  const size = Math.max(1, parseInt($("batch-size").value, 10) || 12);
  state.answers.clear();
  state.history = [];
  try {
    const status = await api("GET", "status");
    $("labeled").textContent = status.labeled;
    $("model-version").textContent = `v${status.model_version}`;
    const available = status.unlabeled_available;
    if (available < 1) {
      state.batch = null;
      $("grid").replaceChildren();
      renderProgress();
      say("Nothing left to label: every item is labeled or leased.");
      return;
    }
    state.batch = await api("POST", "select_batch", { batch_size: Math.min(size, available) });
    document.body.dataset.batchId = state.batch.batch_id;
    await renderBatch();
    say(`Batch of ${state.batch.items.length} from ${state.batch.strategy}.`);
  } catch (e) {
    say(e.message, true);
    if (e.status === 401) showStart();
  }
}

// -- starting ----------------------------------------------------------------------------------------------------
function showStart() {
  $("start").hidden = false;
  $("sign-out").hidden = true;
  $("token").focus();
}

async function start() {
  try {
    const status = await api("GET", "status");
    state.classes = status.classes;
    const schema = await api("GET", "openapi.json");
    const fields = ((schema.components || {}).schemas || {}).LabelIn || {};
    state.canSkip = Boolean((fields.properties || {}).skip);
  } catch (e) {
    say(e.message, true);
    showStart();
    return;
  }
  $("start").hidden = true;
  $("sign-out").hidden = false;
  renderClasses();
  await nextBatch();
}

$("start").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
  start();
});
$("sign-out").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); showStart(); });
$("skip").addEventListener("click", () => answer(state.focus, { skip: true }));
$("undo").addEventListener("click", undo);
$("submit").addEventListener("click", submit);

document.addEventListener("keydown", (event) => {
  if (!$("start").hidden || event.altKey || event.metaKey) return;
  if (event.target instanceof HTMLInputElement) return;
  const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
  const moves = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -columns(), ArrowDown: columns() };
  let handled = true;
  if (event.ctrlKey) {
    if (key === "z") undo(); else handled = false;
  } else if (key in moves) {
    setFocus(state.focus + moves[key]);
  } else if (key === "Home" || key === "End") {
    setFocus(key === "Home" ? 0 : tiles().length - 1);
  } else if (key === "Enter") {
    submit();
  } else if (key === RESERVED.skip) {
    answer(state.focus, { skip: true });
  } else if (key === RESERVED.undo || key === "Backspace") {
    undo();
  } else if (state.classOfKey.has(key)) {
    answer(state.focus, { label: state.classOfKey.get(key) });
  } else {
    handled = false;
  }
  if (handled) event.preventDefault();
});

if (sessionStorage.getItem(TOKEN_KEY) !== null) {
  $("token").value = sessionStorage.getItem(TOKEN_KEY);
  start();
} else {
  showStart();
}
