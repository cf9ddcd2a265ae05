// The avsearch page: plain ES module, no build step, talks to the JSON API of the same origin.

const $ = (id) => document.getElementById(id);

const DIRECTION_WORDS = {
  im2aud: ["sounds", "your image"],
  aud2im: ["images", "your sound"],
  im2im: ["images", "your image"],
  aud2aud: ["sounds", "your sound"],
};

// After a search that returned images, a click on one looks for sounds, and the other way round.
const NEXT_DIRECTION = { im2aud: "aud2im", aud2im: "im2aud", im2im: "im2aud", aud2aud: "aud2im" };
const EXPAND = 10; // the collection's sounds a sound query is averaged with, when asked for

const page = { file: null, pairAudio: null, busy: false, queryImageUrl: null };

class ApiError extends Error {}

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, options);
  } catch (error) {
    throw new ApiError("The server cannot be reached. Is avsearch still running?");
  }
  const type = response.headers.get("content-type") || "";
  const body = type.includes("application/json") ? await response.json() : null;
  if (!response.ok) {
    const message = body && body.error ? body.error.message : `${response.status} ${response.statusText}`;
    throw new ApiError(message);
  }
  return body;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function setBusy(busy, text) {
  page.busy = busy;
  $("search").disabled = busy;
  document.body.classList.toggle("busy", busy);
  if (text) $("summary").textContent = text;
}

async function loadStatus() {
  try {
    const ready = await api("/readyz");
    const device = ready.model.on_gpu || ready.index.on_gpu ? "GPU" : "CPU";
    $("status").textContent =
      `Running on ${device} · model ${ready.model.preset || ""} ${ready.model.hash.slice(0, 8)}` +
      ` · ${ready.index.items.toLocaleString()} items indexed (${ready.index.kind})`;
    $("status").classList.remove("down");
  } catch (error) {
    $("status").textContent = `Not ready: ${error.message}`;
    $("status").classList.add("down");
    setTimeout(loadStatus, 3000);
  }
}

function chooseFile(file) {
  if (page.queryImageUrl) URL.revokeObjectURL(page.queryImageUrl);
  page.queryImageUrl = file && file.type.startsWith("image/") ? URL.createObjectURL(file) : null;
  page.file = file;
  $("t").value = "";
  renderTimeline(null);
  $("file-name").textContent = file ? `${file.name} (${Math.ceil(file.size / 1024)} KB)` : "";
  showError("");
}

function formFor(file) {
  const form = new FormData();
  form.append("file", file, file.name || "upload");
  const direction = $("direction").value;
  if (direction) form.append("direction", direction);
  form.append("k", $("k").value);
  const t = $("t").value;
  if (t !== "" && !file.type.startsWith("image/")) form.append("t", t);
  form.append("explain", "true");
  if (isClip(file) && t === "") form.append("timeline", "true");
  if ($("weak").checked) form.append("min_probability", "0");
  if ($("expand").checked) form.append("expand", String(EXPAND));
  return form;
}

function isClip(file) {
  return file.type.startsWith("video/") || /\.(mp4|webm|mkv|mov)$/i.test(file.name || "");
}

async function search() {
  if (!page.file) {
    showError("Choose a clip, an image or a sound first (or record one).");
    $("drop").focus();
    return;
  }
  showError("");
  setBusy(true, "Searching…");
  try {
    const answer = await api("/v1/search", { method: "POST", body: formFor(page.file) });
    renderResults(answer);
    if (answer.query.timeline) renderTimeline(answer.query.timeline, answer.query.time);
    else if (isClip(page.file)) markChosen(answer.query.time);
    else renderTimeline(null);
    await localizeFor(answer);
  } catch (error) {
    showError(error.message);
    $("summary").textContent = "No results.";
  } finally {
    setBusy(false);
  }
}

async function searchById(id, direction) {
  showError("");
  setBusy(true, `Searching from ${id}…`);
  try {
    const params = new URLSearchParams({ direction, k: $("k").value });
    if ($("weak").checked) params.set("min_probability", "0");
    if ($("expand").checked) params.set("expand", String(EXPAND));
    const answer = await api(`/v1/search/by-id/${encodeURIComponent(id)}?${params}`, { method: "POST" });
    renderResults(answer);
    $("where").hidden = true;
    renderTimeline(null);
    $("results-title").focus();
  } catch (error) {
    showError(error.message);
  } finally {
    setBusy(false);
  }
}

async function localizeFor(answer) {
  const form = new FormData();
  if (answer.query.kind === "video") {
    form.append("file", page.file, page.file.name || "clip");
    if (answer.query.time !== null) form.append("t", String(answer.query.time));
  } else if (answer.query.kind === "image" && page.pairAudio) {
    form.append("image", page.file, page.file.name || "image");
    form.append("audio", page.pairAudio, page.pairAudio.name || "sound");
  } else {
    $("where").hidden = true;
    return;
  }
  const found = await api("/v1/localize", { method: "POST", body: form });
  renderOverlay(found);
}

function renderOverlay(found) {
  $("overlay").src = `data:image/png;base64,${found.overlay_png}`;
  const peak = $("peak");
  peak.style.left = `${(100 * found.peak.x) / found.width}%`;
  peak.style.top = `${(100 * found.peak.y) / found.height}%`;
  const when = found.time !== null ? ` at ${found.time.toFixed(2)} s` : "";
  peak.hidden = !found.on_screen;
  $("overlay-caption").textContent = found.on_screen
    ? `Peak at (${Math.round(found.peak.x)}, ${Math.round(found.peak.y)}) px${when}: ` +
      `probability ${found.peak.score.toFixed(2)} that the sound comes from there.`
    : `The sound does not seem to come from anything in this frame${when} ` +
      `(on-screen probability ${found.on_screen_probability.toFixed(2)}).`;
  $("where").hidden = false;
}

function card(hit, direction) {
  const item = document.createElement("li");
  item.className = "card";
  const searched = direction.endsWith("2im") ? "image" : "audio";
  item.dataset.id = hit.id;

  const image = document.createElement("img");
  image.src = hit.media.image;
  image.alt = `Image of ${hit.id}${hit.labels.length ? ` (${hit.labels.join(", ")})` : ""}`;
  image.loading = "lazy";
  if (searched === "image") image.classList.add("matched");

  const sound = document.createElement("audio");
  sound.controls = true;
  sound.preload = "none";
  sound.src = hit.media.audio;
  sound.setAttribute("aria-label", `Sound of ${hit.id}`);
  if (searched === "audio") sound.classList.add("matched");

  const facts = document.createElement("p");
  facts.className = "facts";
  const time = hit.time !== null ? ` · ${hit.time.toFixed(1)} s` : "";
  const chance = hit.match_probability !== null && hit.match_probability !== undefined
    ? `${Math.round(hit.match_probability * 100)}% match · ` : "";
  facts.textContent = `#${hit.rank} · ${chance}score ${hit.score.toFixed(3)}` +
    `${hit.labels.length ? ` · ${hit.labels.join(", ")}` : ""}${time}`;

  const next = NEXT_DIRECTION[direction];
  const button = document.createElement("button");
  button.type = "button";
  button.className = "from-here";
  button.textContent = `Search from ${hit.id}`;
  button.title = `Look for ${DIRECTION_WORDS[next][0]} like this ${searched === "image" ? "image" : "sound"}`;
  button.addEventListener("click", () => searchById(hit.id, next));
  image.addEventListener("click", () => searchById(hit.id, next));

  item.append(image, sound, facts, button);
  if (hit.explanation) item.append(heatFigure(hit, direction));
  return item;
}

// A hit's explanation: the heat map over the image of the pair (the query image for im2aud,
// the hit's image for aud2im), drawn on a canvas with the peak marked.
function heatFigure(hit, direction) {
  const explanation = hit.explanation;
  const figure = document.createElement("figure");
  figure.className = "heat";
  const canvas = document.createElement("canvas");
  canvas.width = 96;
  canvas.height = 96;
  canvas.setAttribute("role", "img");
  const where = explanation.image === "query" ? "your image" : "this image";
  canvas.setAttribute("aria-label",
    `Where the sound comes from in ${where}: peak ${explanation.peak.score.toFixed(2)}`);
  const caption = document.createElement("figcaption");
  caption.textContent = `sound in ${where}: ${explanation.peak.score.toFixed(2)}`;
  figure.append(canvas, caption);
  const source = explanation.image === "query" ? page.queryImageUrl : hit.media.image;
  drawHeat(canvas, source, explanation);
  return figure;
}

function drawHeat(canvas, source, explanation) {
  const context = canvas.getContext("2d");
  const paint = (picture) => {
    if (picture) context.drawImage(picture, 0, 0, canvas.width, canvas.height);
    const rows = explanation.grid.length;
    const cols = explanation.grid[0].length;
    const w = canvas.width / cols;
    const h = canvas.height / rows;
    explanation.grid.forEach((line, r) => line.forEach((value, c) => {
      context.fillStyle = `rgba(255, 140, 0, ${(0.7 * value).toFixed(3)})`;
      context.fillRect(c * w, r * h, w, h);
    }));
    context.strokeStyle = "#ffffff";
    context.lineWidth = 2;
    context.strokeRect(explanation.peak.col * w + 1, explanation.peak.row * h + 1, w - 2, h - 2);
  };
  if (!source) { paint(null); return; }
  const picture = new Image();
  picture.onload = () => paint(picture);
  picture.onerror = () => paint(null);
  picture.src = source;
}

function markChosen(time) {
  for (const bar of document.querySelectorAll("#timeline .bar")) {
    bar.classList.toggle("chosen", Number(bar.dataset.time) === time);
  }
}

// A clip's timeline: one bar a window, as high as the sound belongs to what is on screen.
function renderTimeline(timeline, chosen) {
  const strip = $("timeline");
  if (!timeline || timeline.length < 2) { strip.hidden = true; strip.replaceChildren(); return; }
  const bars = timeline.map((moment) => {
    const bar = document.createElement("button");
    bar.type = "button";
    bar.className = "bar" + (moment.time === chosen ? " chosen" : "");
    bar.dataset.time = String(moment.time);
    bar.style.setProperty("--score", moment.score.toFixed(3));
    bar.title = `${moment.time.toFixed(1)} s: ${Math.round(moment.score * 100)}% on screen`;
    bar.setAttribute("aria-label", `Search from ${moment.time.toFixed(1)} s (${Math.round(moment.score * 100)}% on screen)`);
    bar.addEventListener("click", () => { $("t").value = moment.time; search(); });
    return bar;
  });
  const label = document.createElement("p");
  label.className = "timeline-label";
  label.textContent = "When the sound belongs to what is on screen (click a moment to search from it):";
  strip.replaceChildren(label, ...bars);
  strip.hidden = false;
}

function renderResults(answer) {
  const list = $("results");
  list.replaceChildren(...answer.results.map((hit) => card(hit, answer.query.direction)));
  const [what, from] = DIRECTION_WORDS[answer.query.direction];
  const source = answer.query.kind === "item" ? answer.query.id : from;
  const clip = answer.query.kind === "video" ? ` (your clip at ${answer.query.time.toFixed(2)} s)` : "";
  const least = answer.min_probability ? `at least ${Math.round(answer.min_probability * 100)}% likely to match` : "";
  const expanded = answer.query.expanded ? ` (with the ${answer.query.expanded} sounds of the collection most like it)` : "";
  $("summary").textContent = answer.results.length
    ? `${answer.results.length} ${what} for ${source}${clip}${expanded}${least ? `, each ${least}` : ""}, in ${Math.round(answer.timing.total_ms)} ms.`
    : answer.no_match && least
      ? `No match: nothing in the index is ${least} ${source}. Tick “Show weak matches too” to see the nearest anyway.`
      : "Nothing in the index.";
  $("summary").classList.toggle("no-match", Boolean(answer.no_match && answer.min_probability));
}

async function record() {
  if (!navigator.mediaDevices || !window.MediaRecorder) {
    showError("This browser cannot record sound here (it needs HTTPS or localhost).");
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (error) {
    showError(`The microphone is not available: ${error.message}`);
    return;
  }
  const chunks = [];
  const recorder = new MediaRecorder(stream);
  recorder.ondataavailable = (event) => chunks.push(event.data);
  recorder.onstop = () => {
    stream.getTracks().forEach((track) => track.stop());
    const type = recorder.mimeType || "audio/webm";
    chooseFile(new File(chunks, `recording.${type.includes("ogg") ? "ogg" : "webm"}`, { type }));
    $("record").textContent = "Record 3 s of sound";
    search();
  };
  $("record").textContent = "Recording…";
  recorder.start();
  setTimeout(() => recorder.stop(), 3000);
}

async function openCamera() {
  if (!navigator.mediaDevices) {
    showError("This browser cannot use a camera here (it needs HTTPS or localhost).");
    return;
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: true });
    $("camera-view").srcObject = stream;
    $("camera-box").hidden = false;
    $("snap").focus();
  } catch (error) {
    showError(`The camera is not available: ${error.message}`);
  }
}

function snap() {
  const view = $("camera-view");
  const canvas = document.createElement("canvas");
  canvas.width = view.videoWidth;
  canvas.height = view.videoHeight;
  canvas.getContext("2d").drawImage(view, 0, 0);
  view.srcObject.getTracks().forEach((track) => track.stop());
  $("camera-box").hidden = true;
  canvas.toBlob((blob) => {
    chooseFile(new File([blob], "camera.png", { type: "image/png" }));
    search();
  }, "image/png");
}

function wire() {
  $("file").addEventListener("change", (event) => chooseFile(event.target.files[0] || null));
  $("pair-audio").addEventListener("change", (event) => { page.pairAudio = event.target.files[0] || null; });
  $("query-form").addEventListener("submit", (event) => { event.preventDefault(); search(); });
  const drop = $("drop");
  drop.tabIndex = 0;
  drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); $("file").click(); }
  });
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer.files.length) {
      chooseFile(event.dataTransfer.files[0]);
      search();
    }
  });
  $("record").addEventListener("click", record);
  $("camera").addEventListener("click", openCamera);
  $("snap").addEventListener("click", snap);
  $("results-title").tabIndex = -1;
}

wire();
loadStatus();
