// gpt.cpp playground: plain JavaScript, no libraries. It talks to `gpt serve` through
// POST /v1/completions (streamed, with logprobs), POST /v1/attention, POST /v1/inspect and GET /v1/models only.
"use strict";

const $ = (id) => document.getElementById(id);

// The generated tokens: {text, logprob, top: [[token, logprob], ...] best first}, in order.
let tokens = [];
let basePrompt = "";     // the prompt the tokens continue
let selected = -1;       // index of the token whose candidates are shown
let controller = null;   // aborts the running request (Stop)
let attention = null;    // the last /v1/attention response

// ---- helpers ---------------------------------------------------------------------------------

function setStatus(text, isError) {
  const s = $("status");
  s.textContent = text;
  s.classList.toggle("error", !!isError);
}

// A token as the candidates list shows it: spaces and line breaks made visible.
function showToken(t) {
  return t.replace(/ /g, "\u2423").replace(/\n/g, "\u23ce").replace(/\t/g, "\u21e5") || "\u2205";
}

// Probability p in [0, 1] -> a background from pale red (unlikely) to pale green (likely).
function tint(p) {
  const hue = Math.round(120 * Math.max(0, Math.min(1, p)));
  return `hsla(${hue}, 75%, 55%, 0.35)`;
}

function intField(id, fallback) {
  const v = parseInt($(id).value, 10);
  return Number.isFinite(v) ? v : fallback;
}
function numField(id, fallback) {
  const v = parseFloat($(id).value);
  return Number.isFinite(v) ? v : fallback;
}

// The message of an OpenAI-style error body, or the HTTP status.
async function errorText(resp) {
  try {
    const j = await resp.json();
    if (j && j.error) return j.error.message || JSON.stringify(j.error);
  } catch (e) { /* not JSON */ }
  return `HTTP ${resp.status}`;
}

// ---- the output ------------------------------------------------------------------------------

function renderOutput() {
  const out = $("output");
  out.textContent = "";
  const p = document.createElement("span");
  p.className = "prompt-text";
  p.textContent = basePrompt;
  out.appendChild(p);
  tokens.forEach((t, i) => out.appendChild(tokenSpan(t, i)));
}

function tokenSpan(t, i) {
  const s = document.createElement("span");
  s.className = "token" + (t.chosen ? " chosen" : "") + (i === selected ? " selected" : "");
  s.textContent = t.text;
  s.dataset.index = i;
  if (t.logprob !== null) {
    const p = Math.exp(t.logprob);
    s.style.background = tint(p);
    s.title = `p = ${(100 * p).toFixed(2)}%`;
  }
  s.addEventListener("click", () => selectToken(i));
  return s;
}

function appendToken(t) {
  tokens.push(t);
  $("output").appendChild(tokenSpan(t, tokens.length - 1));
}

// ---- candidates: predict, sample, repeat -------------------------------------------------------

function selectToken(i) {
  selected = i;
  document.querySelectorAll("#output .token").forEach((s) =>
    s.classList.toggle("selected", Number(s.dataset.index) === i));
  const t = tokens[i];
  const box = $("candidates");
  box.textContent = "";
  box.hidden = false;
  const h = document.createElement("h3");
  h.textContent = t.top.length
    ? `Step ${i + 1}: the model's top ${t.top.length} candidates (sampled: "${showToken(t.sampled)}"). ` +
      "Click one to continue from it."
    : `Step ${i + 1}: no candidates were returned for this token.`;
  box.appendChild(h);
  t.top.forEach(([tok, lp]) => {
    const p = Math.exp(lp);
    const row = document.createElement("div");
    row.className = "candidate" + (tok === t.sampled ? " sampled" : "");
    row.dataset.token = tok;
    row.dataset.prob = String(p);
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = showToken(tok);
    const bar = document.createElement("div");
    bar.className = "bar";
    const fill = document.createElement("div");
    fill.style.width = `${(100 * p).toFixed(2)}%`;
    bar.appendChild(fill);
    const prob = document.createElement("span");
    prob.className = "prob";
    prob.textContent = `${(100 * p).toFixed(1)}%`;
    row.append(text, bar, prob);
    row.addEventListener("click", () => continueFrom(i, tok, lp));
    box.appendChild(row);
  });
  // top-k larger than K (or top-p) can draw a token outside the K shown: say so
  if (t.top.length && t.logprob !== null && !t.top.some(([tok]) => tok === t.sampled)) {
    const note = document.createElement("p");
    note.className = "muted";
    note.textContent = `The sampled token "${showToken(t.sampled)}" (${(100 * Math.exp(t.logprob)).toFixed(2)}%) ` +
      `is not among the top ${t.top.length}.`;
    box.appendChild(note);
  }
}

// Replace token i by a candidate and generate again from the text up to it.
function continueFrom(i, tok, lp) {
  if (controller) controller.abort();
  const old = tokens[i];
  tokens = tokens.slice(0, i);
  tokens.push({ text: tok, logprob: lp, top: old.top, sampled: tok, chosen: true });
  selected = -1;
  $("candidates").hidden = true;
  renderOutput();
  const text = basePrompt + tokens.map((t) => t.text).join("");
  generate(text, false);
}

// ---- streaming a completion ----------------------------------------------------------------------

// Adds the tokens of one streamed chunk (OpenAI completions format).
function addChunk(choice) {
  const lp = choice.logprobs;
  if (!lp || !Array.isArray(lp.tokens) || lp.tokens.length === 0) {
    if (choice.text) appendToken({ text: choice.text, logprob: null, top: [], sampled: choice.text });
    return;
  }
  const n = lp.tokens.length;
  for (let k = 0; k < n; k++) {
    const top = Object.entries((lp.top_logprobs && lp.top_logprobs[k]) || {}).sort((a, b) => b[1] - a[1]);
    // One token per chunk is the rule: its text is the chunk's (UTF-8 whole); more share it out.
    const text = n === 1 ? choice.text : lp.tokens[k];
    const logprob = lp.token_logprobs && lp.token_logprobs[k] !== undefined ? lp.token_logprobs[k] : null;
    appendToken({ text: text, logprob: logprob, top: top, sampled: lp.tokens[k] });
  }
}

// Streams a completion of `prompt`; fresh = a new text (otherwise it continues the shown tokens).
async function generate(prompt, fresh) {
  if (fresh) {
    basePrompt = prompt;
    tokens = [];
    selected = -1;
    $("candidates").hidden = true;
    renderOutput();
  }
  const body = {
    prompt: prompt,
    max_tokens: intField("max-tokens", 32),
    temperature: numField("temperature", 1.0),
    top_p: numField("top-p", 1.0),
    top_k: intField("top-k", 0),
    logprobs: Math.max(1, Math.min(20, intField("candidates-k", 5))),
    stream: true,
  };
  const seed = intField("seed", NaN);
  if (Number.isFinite(seed)) body.seed = seed;
  controller = new AbortController();
  const mine = controller;
  $("generate").disabled = true;
  $("stop").disabled = false;
  setStatus("generating\u2026");
  let count = 0;
  try {
    const resp = await fetch("/v1/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      signal: mine.signal,
    });
    if (!resp.ok) throw new Error(await errorText(resp));
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buf = "", done = false;
    while (!done) {
      const r = await reader.read();
      if (r.done) break;
      buf += decoder.decode(r.value, { stream: true });
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {  // one server-sent event
        const event = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        for (const line of event.split("\n")) {
          if (!line.startsWith("data:")) continue;
          const data = line.slice(5).trim();
          if (data === "[DONE]") { done = true; break; }
          const j = JSON.parse(data);
          if (j.error) throw new Error(j.error.message || "server error");
          if (j.choices && j.choices.length) {
            const before = tokens.length;
            addChunk(j.choices[0]);
            count += tokens.length - before;
          }
        }
        if (done) break;
      }
    }
    setStatus(`${count} tokens`);
  } catch (e) {
    if (e.name === "AbortError") setStatus(`stopped after ${count} tokens`);
    else setStatus(String(e.message || e), true);
  } finally {
    if (controller === mine) {
      controller = null;
      $("generate").disabled = false;
      $("stop").disabled = true;
    }
  }
}

// ---- attention ---------------------------------------------------------------------------------

function fillSelect(sel, n, value) {
  if (sel.options.length === n) return;
  sel.textContent = "";
  for (let i = 0; i < n; i++) sel.add(new Option(String(i), String(i)));
  sel.value = String(Math.min(value, n - 1));
}

async function runAttention() {
  const st = $("attention-status");
  st.classList.remove("error");
  st.textContent = "computing\u2026";
  const body = {
    prompt: $("prompt").value,
    layer: Number($("attention-layer").value),
    head: Number($("attention-head").value),
  };
  try {
    const resp = await fetch("/v1/attention", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!resp.ok) throw new Error(await errorText(resp));
    attention = await resp.json();
    fillSelect($("attention-layer"), attention.n_layer, attention.layer);
    fillSelect($("attention-head"), attention.n_head, attention.head);
    const kind = attention.banded ? `banded layer (band ${attention.band})` : "dense layer";
    st.textContent = `layer ${attention.layer}, head ${attention.head}: ${kind}, ${attention.tokens.length} tokens`;
    drawHeatmap();
  } catch (e) {
    st.textContent = String(e.message || e);
    st.classList.add("error");
  }
}

// Geometry of the last drawn map, for hovering.
let geom = null;

function label(t) {
  const s = showToken(t);
  return s.length > 12 ? s.slice(0, 11) + "\u2026" : s;
}

function drawHeatmap() {
  const a = attention, T = a.tokens.length;
  const canvas = $("heatmap"), ctx = canvas.getContext("2d");
  const cell = Math.max(6, Math.min(28, Math.floor(640 / T)));
  const font = `${Math.max(9, Math.min(13, cell - 2))}px ui-monospace, "DejaVu Sans Mono", monospace`;
  ctx.font = font;
  let labelW = 0;
  for (const t of a.tokens) labelW = Math.max(labelW, ctx.measureText(label(t)).width);
  const left = Math.ceil(labelW) + 10, top = Math.ceil(labelW) + 10;
  canvas.width = left + T * cell + 2;
  canvas.height = top + T * cell + 2;
  ctx.fillStyle = "#ffffff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.font = font;
  for (let i = 0; i < T; i++) {
    for (let j = 0; j < T; j++) {
      const visible = j <= i && (!a.banded || j > i - a.band);
      if (!visible) {
        ctx.fillStyle = "#eceef1";  // masked: the query cannot see this key
      } else {
        const w = a.weights[i][j];
        const l = Math.round(97 - 72 * Math.max(0, Math.min(1, w)));  // light to dark blue
        ctx.fillStyle = `hsl(220, 70%, ${l}%)`;
      }
      ctx.fillRect(left + j * cell, top + i * cell, cell - 1, cell - 1);
    }
  }
  ctx.fillStyle = "#1d232b";
  ctx.textBaseline = "middle";
  ctx.textAlign = "right";
  const every = Math.ceil(11 / cell);  // small cells: label every n-th token so labels do not overlap
  for (let i = 0; i < T; i += every) ctx.fillText(label(a.tokens[i]), left - 5, top + i * cell + cell / 2);
  for (let j = 0; j < T; j += every) {  // keys along the top, written upwards
    ctx.save();
    ctx.translate(left + j * cell + cell / 2, top - 5);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "left";
    ctx.fillText(label(a.tokens[j]), 0, 0);
    ctx.restore();
  }
  canvas.dataset.tokens = String(T);
  geom = { left, top, cell, T };
}

function hoverHeatmap(ev) {
  const tip = $("heatmap-tip");
  if (!geom || !attention) return;
  const r = $("heatmap").getBoundingClientRect();
  const x = ev.clientX - r.left, y = ev.clientY - r.top;
  const j = Math.floor((x - geom.left) / geom.cell), i = Math.floor((y - geom.top) / geom.cell);
  if (i < 0 || j < 0 || i >= geom.T || j >= geom.T) {
    tip.hidden = true;
    return;
  }
  const w = attention.weights[i][j];
  tip.textContent = `query ${i} "${showToken(attention.tokens[i])}" \u2192 key ${j} ` +
    `"${showToken(attention.tokens[j])}": ${w.toFixed(4)}`;
  tip.style.left = `${ev.clientX + 14}px`;
  tip.style.top = `${ev.clientY + 14}px`;
  tip.hidden = false;
}

// ---- wiring ------------------------------------------------------------------------------------

$("generate").addEventListener("click", () => generate($("prompt").value, true));
$("stop").addEventListener("click", () => { if (controller) controller.abort(); });
// ---- logit lens --------------------------------------------------------------------------------

async function runLens() {
  const st = $("lens-status");
  st.classList.remove("error");
  st.textContent = "computing\u2026";
  try {
    const resp = await fetch("/v1/inspect", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ prompt: $("prompt").value, top_k: 5 }),
    });
    if (!resp.ok) throw new Error(await errorText(resp));
    drawLens(await resp.json());
  } catch (e) {
    st.textContent = String(e.message || e);
    st.classList.add("error");
  }
}

function drawLens(r) {
  const table = $("lens");
  table.textContent = "";
  const head = table.insertRow();
  head.appendChild(document.createElement("th")).textContent = "layer";
  for (const t of r.tokens) head.appendChild(document.createElement("th")).textContent = label(t);
  for (const layer of r.layers) {
    const row = table.insertRow();
    row.appendChild(document.createElement("th")).textContent = String(layer.layer);
    for (const pos of layer.lens) {
      const top = pos.top[0], cell = row.insertCell();
      const l = Math.round(97 - 72 * Math.max(0, Math.min(1, top.prob)));  // light to dark blue
      cell.style.background = `hsl(214, 70%, ${l}%)`;
      cell.style.color = l < 60 ? "#ffffff" : "#111111";
      cell.textContent = label(top.token);
      cell.title = `layer ${layer.layer}, after "${showToken(r.tokens[pos.position])}":\n` +
        pos.top.map((c) => `"${showToken(c.token)}" ${(100 * c.prob).toFixed(1)}%`).join("\n");
    }
  }
  $("lens-status").textContent = `${r.n_layer} layers, ${r.tokens.length} tokens (${r.ln}-LN)`;
}

$("lens-run").addEventListener("click", runLens);
$("attention-run").addEventListener("click", runAttention);
$("attention-layer").addEventListener("change", () => { if (attention) runAttention(); });
$("attention-head").addEventListener("change", () => { if (attention) runAttention(); });
$("heatmap").addEventListener("mousemove", hoverHeatmap);
$("heatmap").addEventListener("mouseleave", () => { $("heatmap-tip").hidden = true; });

fetch("/v1/models")
  .then((r) => (r.ok ? r.json() : null))
  .then((j) => { if (j && j.data && j.data.length) $("model-name").textContent = `model: ${j.data[0].id}`; })
  .catch(() => {});
