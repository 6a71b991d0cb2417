// The playground: one conversation with /api/chat/stream, kept in localStorage. No inline script (the CSP
// forbids it); model output is untrusted, so Markdown is rendered by marked and sanitized by DOMPurify.
import { marked } from "./vendor/marked.esm.js";
import DOMPurify from "./vendor/purify.es.mjs";

// The service's root, from this file's own URL (<root>/ui/app.js): the API is reached under the same prefix
// whether the service is served at /, under LLM_BASE_PATH, mounted in a host app or behind a stripping proxy.
const ROOT = new URL("..", import.meta.url);
const STORE = { conversation: "llm-playground.conversation", settings: "llm-playground.settings", theme: "llm-playground.theme" };
const KEY_STORE = "llm-playground.api-key"; // sessionStorage: gone with the tab
const $ = (id) => document.getElementById(id);
const log = $("log");
const status = $("status");
const fields = ["model", "system", "temperature", "top_p", "max_tokens"];

let conversation = load(localStorage, STORE.conversation, []);
let running = null; // the AbortController of the request in flight

function load(storage, key, fallback) {
  try {
    return JSON.parse(storage.getItem(key)) ?? fallback;
  } catch {
    return fallback;
  }
}

function save() {
  localStorage.setItem(STORE.conversation, JSON.stringify(conversation));
}

function saveSettings() {
  localStorage.setItem(STORE.settings, JSON.stringify(Object.fromEntries(fields.map((f) => [f, $(f).value]))));
}

function setStatus(text, isError = false) {
  status.textContent = text;
  status.classList.toggle("error", isError);
}

function applyTheme(theme) {
  document.documentElement.dataset.theme = theme;
  $("theme").setAttribute("aria-pressed", String(theme === "dark"));
  $("theme").textContent = theme === "dark" ? "Light theme" : "Dark theme";
}

// Raw HTML in an answer is shown as text, never parsed: the model's markup is not ours to run, and parsing it
// at all (even to sanitize it) makes Chromium report every inline handler in it as a CSP violation.
const escapeHtml = (html) => html.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
marked.use({ renderer: { html: ({ text }) => escapeHtml(text) } });

function renderMarkdown(element, text) {
  // DOMPurify stays as a second line; no images either: an answer must not make the page fetch anything.
  element.innerHTML = DOMPurify.sanitize(marked.parse(text, { async: false, gfm: true, breaks: true }), { FORBID_TAGS: ["img"] });
  for (const pre of element.querySelectorAll("pre")) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "copy";
    button.textContent = "Copy";
    button.setAttribute("aria-label", "Copy code");
    button.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(pre.querySelector("code")?.textContent ?? pre.textContent);
        button.textContent = "Copied";
      } catch {
        button.textContent = "Copy failed";
      }
    });
    pre.append(button);
  }
}

function statsText(message) {
  const parts = [];
  if (message.timings) {
    parts.push(`${message.timings.output_tokens_per_second.toFixed(1)} tokens/s`);
    parts.push(`first token ${(message.timings.time_to_first_token_seconds * 1000).toFixed(0)} ms`);
  }
  if (message.finish_reason) parts.push(`finish: ${message.finish_reason}`);
  return parts.join(" · ");
}

function addMessage(message) {
  const element = document.createElement("article");
  element.className = `msg ${message.role}`;
  const body = document.createElement("div");
  body.className = "body";
  element.append(body);
  const stats = document.createElement("div");
  stats.className = "stats";
  element.append(stats);
  log.append(element);
  const view = {
    update() {
      if (message.role === "assistant") renderMarkdown(body, message.content);
      else body.textContent = message.content;
      stats.textContent = statsText(message);
      if (message.error) {
        const error = document.createElement("p");
        error.className = "error";
        error.textContent = message.error;
        stats.append(error);
      }
      log.scrollTop = log.scrollHeight;
    },
  };
  view.update();
  return view;
}

function renderAll() {
  log.replaceChildren();
  for (const message of conversation) addMessage(message);
}

function headers() {
  const result = { "Content-Type": "application/json" };
  const key = sessionStorage.getItem(KEY_STORE);
  if (key) result.Authorization = `Bearer ${key}`;
  return result;
}

function askForKey(reason) {
  $("key-reason").textContent = reason;
  $("key").value = sessionStorage.getItem(KEY_STORE) ?? "";
  if (!$("key-dialog").open) $("key-dialog").showModal();
}

// A refused request's status and body, said plainly.
async function describeFailure(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body?.error?.message) message = `${response.status}: ${body.error.message}`;
  } catch {
    // not our JSON error body: the status alone
  }
  const retry = response.headers.get("Retry-After");
  if (response.status === 401) {
    askForKey("This server needs an API key. It is kept in this tab only (sessionStorage).");
    return `${message}. Enter an API key and send again.`;
  }
  if (response.status === 429) return `${message} (retry after ${retry ?? "?"} s)`;
  if (response.status === 503) return `The model is not ready yet (loading); retry after ${retry ?? "?"} s. ${message}`;
  return message;
}

async function loadModels() {
  const select = $("model");
  const wanted = load(localStorage, STORE.settings, {}).model;
  let response;
  try {
    response = await fetch(new URL("api/llms", ROOT), { headers: headers() });
  } catch (error) {
    setStatus(`Cannot reach the server: ${error.message}`, true);
    return;
  }
  if (!response.ok) {
    setStatus(await describeFailure(response), true);
    return;
  }
  const { models } = await response.json();
  select.replaceChildren();
  for (const model of models) {
    const option = document.createElement("option");
    option.value = model.id;
    // A model not loaded yet has no backend; it loads on its first message.
    const state = model.state.replace("_", " ");
    option.textContent = model.backend ? `${model.id} (${model.backend}, ${state})` : `${model.id} (${state})`;
    option.selected = model.id === wanted || (!wanted && model.default);
    select.append(option);
  }
  setStatus("");
}

function requestBody() {
  const messages = [];
  const system = $("system").value.trim();
  if (system) messages.push({ role: "system", content: system });
  for (const { role, content } of conversation) if (content) messages.push({ role, content });
  const body = { messages };
  if ($("model").value) body.model = $("model").value;
  for (const [field, parse] of [["temperature", parseFloat], ["top_p", parseFloat], ["max_tokens", (v) => parseInt(v, 10)]]) {
    const value = parse($(field).value);
    if (!Number.isNaN(value)) body[field] = value;
  }
  return body;
}

// Reads `data: <json>` events until `[DONE]`, calling onEvent for each.
async function readEvents(response, onEvent) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
      if (!data) continue; // a comment (keep-alive ping)
      if (data === "[DONE]") return;
      onEvent(JSON.parse(data));
    }
  }
}

function setRunning(controller) {
  running = controller;
  $("send").disabled = Boolean(controller);
  $("stop").disabled = !controller;
}

async function send() {
  const text = $("prompt").value;
  if (!text.trim() || running) return;
  $("prompt").value = "";
  conversation.push({ role: "user", content: text });
  addMessage(conversation.at(-1));
  const body = requestBody();
  const answer = { role: "assistant", content: "" };
  conversation.push(answer);
  save();
  const view = addMessage(answer);
  const controller = new AbortController();
  setRunning(controller);
  setStatus("Generating…");
  let pending = false;
  try {
    const response = await fetch(new URL("api/chat/stream", ROOT), { method: "POST", headers: headers(), body: JSON.stringify(body), signal: controller.signal });
    if (!response.ok) {
      answer.error = await describeFailure(response);
    } else {
      await readEvents(response, (event) => {
        if (event.type === "delta") {
          answer.content += event.text;
          if (!pending) {
            pending = true;
            requestAnimationFrame(() => {
              pending = false;
              view.update();
            });
          }
        } else if (event.type === "done") {
          answer.finish_reason = event.finish_reason;
          answer.timings = event.timings;
        } else if (event.type === "error") {
          answer.error = `${event.error.type}: ${event.error.message}`;
        }
      });
    }
  } catch (error) {
    answer.error = error.name === "AbortError" ? null : `Request failed: ${error.message}`;
    if (error.name === "AbortError") answer.finish_reason = "stopped";
  } finally {
    setRunning(null);
    if (answer.error && !answer.content) {
      // Nothing was answered: the question goes back to the box, the error to the status line.
      conversation.splice(-2, 2);
      $("prompt").value = text;
      save();
      renderAll();
      setStatus(answer.error, true);
    } else {
      save();
      view.update();
      setStatus(answer.error ? "The answer was cut short." : answer.finish_reason === "stopped" ? "Stopped." : "", Boolean(answer.error));
    }
  }
}

function init() {
  const settings = load(localStorage, STORE.settings, {});
  for (const field of fields) {
    if (field !== "model" && settings[field] !== undefined) $(field).value = settings[field];
    $(field).addEventListener("change", saveSettings);
  }
  applyTheme(localStorage.getItem(STORE.theme) ?? (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light"));
  $("theme").addEventListener("click", () => {
    const theme = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
    localStorage.setItem(STORE.theme, theme);
    applyTheme(theme);
  });
  $("clear").addEventListener("click", () => {
    running?.abort();
    conversation = [];
    save();
    renderAll();
    setStatus("");
  });
  $("stop").addEventListener("click", () => running?.abort());
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    send();
  });
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  });
  $("key-button").addEventListener("click", () => askForKey("API key for this server, kept in this tab only (sessionStorage)."));
  $("key-dialog").addEventListener("close", () => {
    if ($("key-dialog").returnValue !== "save") return;
    const key = $("key").value.trim();
    if (key) sessionStorage.setItem(KEY_STORE, key);
    else sessionStorage.removeItem(KEY_STORE);
    loadModels();
  });
  renderAll();
  loadModels();
}

init();
