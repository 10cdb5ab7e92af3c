/* Tombola's page: four panels, each fed by its own service (I, S, B, P).
 * A panel whose service fails says so; the other panels keep working.
 * Text from the services is only ever set with textContent. */
"use strict";

const ID_PATTERN = /^[0-9]{1,9}$/;
const LOOKUP_TIMEOUT_MS = 10000;
const PLAY_TIMEOUT_MS = 45000;
const PICTURE_POLL_MS = 500;
const PICTURE_WAIT_MS = 15000;
const STATUS_POLL_MS = 1000;
const STATUS_WAIT_MS = 30000;
const START = "Enter your customer number to begin.";

const form = document.querySelector("#lookup");
const input = document.querySelector("#customer-id");
const lookupMessage = document.querySelector("#lookup-message");
const playButton = document.querySelector("#play");
const picture = document.querySelector("#prize-img");
const identity = document.querySelector("#panel-i .identity");
const panels = {
  i: document.querySelector("#panel-i"),
  s: document.querySelector("#panel-s"),
  b: document.querySelector("#panel-b"),
  p: document.querySelector("#panel-p"),
};

/* What the page knows of the customer on screen; `generation` changes with the customer,
 * so that an answer about a previous customer is dropped. */
const state = {
  id: null,
  generation: 0,
  customer: "none", // none | loading | known | unknown | unavailable
  status: "none", // none | loading | not_played | playing | played | unavailable
  playing: false,
  outcome: false, // panel B shows the outcome of this page's own play
  done: false, // B said this customer has played, whatever S says
  coolDownUntil: 0,
  fallback: null, // the picture in base64, used if its URL does not load
};

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The canonical customer id in `raw`, or null when it is not a positive whole number of at most 9 digits. */
function parseId(raw) {
  const text = (raw ?? "").trim();
  if (!ID_PATTERN.test(text) || Number(text) === 0) return null;
  return String(Number(text));
}

/** One call to a service: {status, body, retryAfter}; status 0 when the network failed or it timed out. */
async function call(method, path, timeoutMs) {
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: { Accept: "application/json" },
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch {
    return { status: 0, body: null, retryAfter: null };
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  return { status: response.status, body, retryAfter: response.headers.get("Retry-After") };
}

/** Show `text` in a panel's message line; `kind` is info, success or error. */
function say(panel, text, kind = "info", busy = false) {
  const message = panel.querySelector(".message");
  const target = message.querySelector(".text") ?? message;
  target.textContent = text;
  message.dataset.kind = kind;
  message.hidden = text === "";
  const spinner = message.querySelector(".spinner");
  if (spinner) spinner.hidden = !busy;
  panel.setAttribute("aria-busy", String(busy));
}

function unavailable(panel, service) {
  say(panel, `Service ${service} is currently not available.`, "error");
}

function formatDate(iso) {
  const moment = new Date(iso);
  if (Number.isNaN(moment.getTime())) return String(iso);
  return moment.toLocaleString(undefined, { dateStyle: "long", timeStyle: "short" });
}

/** Enable Play only when a play can succeed, and explain why not in panel B otherwise. */
function updatePlay() {
  const customerOk = state.customer === "known" || state.customer === "unavailable";
  const statusOk = !state.done && (state.status === "not_played" || state.status === "unavailable");
  const coolingDown = Date.now() < state.coolDownUntil;
  playButton.disabled = state.id === null || state.playing || coolingDown || !customerOk || !statusOk;
  if (state.id === null || state.playing || state.outcome) return;
  if (state.customer === "unknown") say(panels.b, "Only customers of the shop can play.", "error");
  else if (state.status === "played") say(panels.b, "You have already played: see your prize.");
  else if (state.status === "playing") say(panels.b, "A play is in progress for this customer…");
  else if (!playButton.disabled) say(panels.b, "Press Play to draw your prize.");
  else if (!coolingDown) say(panels.b, "");
}

async function loadIdentity(id, generation) {
  state.customer = "loading";
  identity.hidden = true;
  say(panels.i, "Loading…");
  const answer = await call("GET", `/srvi/user/${id}`, LOOKUP_TIMEOUT_MS);
  if (generation !== state.generation) return;
  if (answer.status === 200 && answer.body) {
    for (const field of ["firstname", "lastname", "email"]) {
      identity.querySelector(`[data-field="${field}"]`).textContent = answer.body[field] ?? "";
    }
    identity.hidden = false;
    state.customer = "known";
    say(panels.i, "");
  } else if (answer.status === 404) {
    state.customer = "unknown";
    say(panels.i, "Unknown customer", "error");
  } else {
    state.customer = "unavailable";
    unavailable(panels.i, "I");
  }
  updatePlay();
}

/** Refresh panel S; answer the status, or null when the customer on screen changed meanwhile. */
async function loadStatus(id, generation) {
  const answer = await call("GET", `/srvs/user/${id}`, LOOKUP_TIMEOUT_MS);
  if (generation !== state.generation) return null;
  const play = answer.body;
  if (answer.status === 200 && play && ["not_played", "playing", "played"].includes(play.status)) {
    state.status = play.status;
    if (play.status === "played") {
      say(panels.s, `Played on ${formatDate(play.played_at)} — prize: ${play.price}`, "success");
    } else {
      say(panels.s, play.status === "playing" ? "Playing…" : "Not played yet");
    }
  } else {
    state.status = "unavailable";
    unavailable(panels.s, "S");
  }
  updatePlay();
  return state.status;
}

/** Panel S, followed while another tab's play is being drawn; then the picture is awaited. */
async function followStatus(id, generation) {
  state.status = "loading";
  say(panels.s, "Loading…");
  const until = Date.now() + STATUS_WAIT_MS;
  let status = await loadStatus(id, generation);
  if (status !== "playing") return;
  while (status === "playing" && Date.now() < until) {
    await sleep(STATUS_POLL_MS);
    if (generation !== state.generation) return;
    status = await loadStatus(id, generation);
  }
  if (status === "played") await waitForPicture(id, generation);
}

function showPicture(url, base64) {
  state.fallback = base64 ? `data:image/jpeg;base64,${base64}` : null;
  const sameOrigin = typeof url === "string" && url.startsWith("/") && !url.startsWith("//");
  picture.src = sameOrigin ? url : state.fallback;
  picture.hidden = false;
}

function hidePicture() {
  picture.hidden = true;
  picture.removeAttribute("src");
  state.fallback = null;
}

/** Refresh panel P; answer ok, ko, unavailable, or stale when the customer on screen changed meanwhile. */
async function loadPicture(id, generation, expected = false) {
  const answer = await call("GET", `/srvp/user/${id}`, LOOKUP_TIMEOUT_MS);
  if (generation !== state.generation) return "stale";
  const body = answer.body;
  if (answer.status === 200 && body?.status === "ok") {
    showPicture(body.url, body.img);
    say(panels.p, "");
    return "ok";
  }
  hidePicture();
  if (answer.status === 200 && body?.status === "ko") {
    say(panels.p, expected ? "Your prize picture is on its way…" : "No prize yet", "info", expected);
    return "ko";
  }
  if (answer.status === 503 && body?.status === "storage_unavailable") {
    say(panels.p, "The prize pictures cannot be reached right now. Please try again later.", "error");
  } else {
    unavailable(panels.p, "P");
  }
  return "unavailable";
}

/** After a play the picture is stored in the background: ask P until it is there, for a while. */
async function waitForPicture(id, generation) {
  const until = Date.now() + PICTURE_WAIT_MS;
  for (;;) {
    const outcome = await loadPicture(id, generation, true);
    if (outcome === "ok" || outcome === "stale") return;
    if (Date.now() >= until) break;
    await sleep(PICTURE_POLL_MS);
    if (generation !== state.generation) return;
  }
  if (panels.p.querySelector(".message").dataset.kind !== "error") {
    say(panels.p, "Your prize picture is not ready yet. Please reload the page in a moment.");
  }
}

function retryDelay(header) {
  const seconds = Number.parseInt(header ?? "", 10);
  return Number.isFinite(seconds) && seconds > 0 ? Math.min(seconds, 3600) : 5;
}

async function play() {
  const { id, generation } = state;
  if (id === null || state.playing) return;
  state.playing = true;
  state.outcome = false;
  updatePlay();
  say(panels.b, "Please wait, drawing your prize…", "info", true);
  const answer = await call("POST", `/srvb/user/${id}`, PLAY_TIMEOUT_MS);
  if (generation !== state.generation) return;
  state.playing = false;
  state.outcome = true;
  const body = answer.body;
  const won = answer.status === 200 && body?.status === "ok";
  state.done = won || answer.status === 409;
  if (won) {
    say(panels.b, `Congratulations! You won: ${body.price}`, "success");
  } else if (answer.status === 409) {
    say(panels.b, "Already played", "error");
  } else if (answer.status === 404) {
    say(panels.b, "Unknown customer", "error");
  } else if (answer.status === 429) {
    const seconds = retryDelay(answer.retryAfter);
    state.coolDownUntil = Date.now() + seconds * 1000;
    setTimeout(updatePlay, seconds * 1000 + 50);
    say(panels.b, `Too many attempts. Please try again in ${seconds} s.`, "error");
  } else if (answer.status === 503) {
    say(panels.b, "The prize service is busy, please try again", "error");
  } else {
    unavailable(panels.b, "B");
  }
  const status = await loadStatus(id, generation);
  if (won) await waitForPicture(id, generation);
  else if (state.done || status === "played") await loadPicture(id, generation);
}

function resetPanels(text) {
  identity.hidden = true;
  hidePicture();
  for (const panel of Object.values(panels)) say(panel, text);
  updatePlay();
}

/** Show the customer `raw` (from the address or the box), or explain why it is not a customer number. */
function load(raw) {
  state.generation += 1;
  const id = parseId(raw);
  Object.assign(state, { id, customer: "none", status: "none", playing: false, outcome: false, done: false });
  state.coolDownUntil = 0;
  input.value = id ?? raw ?? "";
  lookupMessage.textContent = "";
  input.removeAttribute("aria-invalid");
  if (id === null) {
    document.title = "Tombola — one free play per customer";
    if (raw) refuse(raw);
    resetPanels(raw ? "Enter a valid customer number." : START);
    return;
  }
  document.title = `Tombola — customer ${id}`;
  const generation = state.generation;
  updatePlay();
  loadIdentity(id, generation);
  followStatus(id, generation);
  say(panels.p, "Loading…");
  loadPicture(id, generation);
}

function refuse(raw) {
  input.setAttribute("aria-invalid", "true");
  if (raw === "") {
    lookupMessage.textContent = "Please enter your customer number.";
    return;
  }
  const shown = raw.length > 24 ? `${raw.slice(0, 24)}…` : raw;
  lookupMessage.textContent = `“${shown}” is not a customer number: enter a whole number from 1 to 999999999.`;
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const raw = input.value.trim();
  const id = parseId(raw);
  if (id === null) {
    refuse(raw);
    input.focus();
    return;
  }
  const address = `?id=${id}`;
  if (location.search !== address) history.pushState(null, "", address);
  load(id);
});

input.addEventListener("input", () => {
  if (input.getAttribute("aria-invalid") && parseId(input.value) !== null) {
    input.removeAttribute("aria-invalid");
    lookupMessage.textContent = "";
  }
});

playButton.addEventListener("click", play);
picture.addEventListener("error", () => {
  if (state.fallback && picture.src !== state.fallback) picture.src = state.fallback;
});
window.addEventListener("popstate", () => load(new URLSearchParams(location.search).get("id")));

load(new URLSearchParams(location.search).get("id"));
if (state.id === null) input.focus();
