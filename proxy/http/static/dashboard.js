// semcache dashboard: polls /dashboard/data and draws it. No framework, no build step.
"use strict";

// USD per 1M tokens [input, output]: OpenAI list prices as published in March 2026 (see the
// README). A model matches the longest name it starts with. Edit them in the page; they are kept
// in this browser (localStorage).
const DEFAULT_PRICES = {
  "gpt-5": [1.25, 10.0],
  "gpt-5-mini": [0.25, 2.0],
  "gpt-5-nano": [0.05, 0.4],
  "gpt-4.1": [2.0, 8.0],
  "gpt-4.1-mini": [0.4, 1.6],
  "gpt-4.1-nano": [0.1, 0.4],
  "gpt-4o": [2.5, 10.0],
  "gpt-4o-mini": [0.15, 0.6],
  "o3": [2.0, 8.0],
  "o4-mini": [1.1, 4.4],
  "text-embedding-3-small": [0.02, 0.0],
  "text-embedding-3-large": [0.13, 0.0],
};
const PRICES_KEY = "semcache.prices";
const POLL_MS = 2000;

function loadPrices() {
  try {
    return { ...DEFAULT_PRICES, ...JSON.parse(localStorage.getItem(PRICES_KEY) || "{}") };
  } catch (e) {
    return { ...DEFAULT_PRICES };
  }
}

let prices = loadPrices();
let charts = null;

function priceOf(model) {
  let best = null;
  for (const name of Object.keys(prices)) {
    if (model.startsWith(name) && (best === null || name.length > best.length)) best = name;
  }
  return best === null ? [0, 0] : prices[best];
}

const fmt = new Intl.NumberFormat("en", { maximumFractionDigits: 1 });
const usd = new Intl.NumberFormat("en", { style: "currency", currency: "USD", maximumFractionDigits: 4 });

function text(id, value) {
  document.getElementById(id).textContent = value;
}

function bytes(n) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${fmt.format(n)} ${units[i]}`;
}

function rows(tableId, items, cells) {
  const body = document.querySelector(`#${tableId} tbody`);
  body.replaceChildren(...items.map((item) => {
    const tr = document.createElement("tr");
    for (const [value, numeric] of cells(item)) {
      const td = document.createElement("td");
      if (value instanceof Node) td.append(value); else td.textContent = value;
      if (numeric) td.className = "n";
      tr.append(td);
    }
    return tr;
  }));
}

function counts(tableId, counter) {
  const items = Object.entries(counter || {}).sort((a, b) => b[1] - a[1]);
  rows(tableId, items.length ? items : [["none yet", ""]], ([k, v]) => [[k, false], [v, true]]);
}

function priceInput(model, index) {
  const input = document.createElement("input");
  input.type = "number"; input.min = "0"; input.step = "0.01";
  input.value = priceOf(model)[index];
  input.setAttribute("aria-label", `${model} ${index ? "output" : "input"} price`);
  input.addEventListener("change", () => {
    const pair = [...priceOf(model)];
    pair[index] = Number(input.value) || 0;
    prices[model] = pair;
    const saved = JSON.parse(localStorage.getItem(PRICES_KEY) || "{}");
    saved[model] = pair;
    localStorage.setItem(PRICES_KEY, JSON.stringify(saved));
    refresh();
  });
  return input;
}

const pct = (v) => `${fmt.format(100 * v)} %`;
const pct2 = new Intl.NumberFormat("en", { style: "percent", minimumFractionDigits: 2, maximumFractionDigits: 2 });

function lineOf(offset) {
  if (offset === null) return "none served";
  return offset === 0 ? "calibrated" : `calibrated ${offset > 0 ? "+" : ""}${offset.toFixed(2)}`;
}

function interval(rate) {
  return `${pct2.format(rate.estimate)} (${pct2.format(rate.low95)}–${pct2.format(rate.high95)})`;
}

function series(points) {
  // Per-interval differences of cumulative samples.
  const t = [], exact = [], semantic = [], coalesced = [], misses = [], hitMs = [], missMs = [];
  for (let i = 1; i < points.length; i++) {
    const a = points[i - 1], b = points[i];
    if (b.t <= a.t) continue;
    t.push(b.t);
    exact.push(b.exact - a.exact);
    semantic.push(b.semantic - a.semantic);
    coalesced.push(b.coalesced - a.coalesced);
    misses.push(b.misses - a.misses);
    const hc = b.hit_count - a.hit_count, mc = b.miss_count - a.miss_count;
    hitMs.push(hc > 0 ? (1000 * (b.hit_seconds - a.hit_seconds)) / hc : null);
    missMs.push(mc > 0 ? (1000 * (b.miss_seconds - a.miss_seconds)) / mc : null);
  }
  return { requests: [t, exact, semantic, coalesced, misses], latency: [t, hitMs, missMs] };
}

function makeCharts(data) {
  const width = (id) => document.getElementById(id).clientWidth || 500;
  const line = (label, stroke) => ({ label, stroke, width: 2, spanGaps: true });
  return {
    requests: new uPlot({
      width: width("chart-requests"), height: 220,
      series: [{}, line("exact", "#2f6fde"), line("semantic", "#12a150"), line("coalesced", "#9b59b6"), line("miss", "#d9534f")],
    }, data.requests, document.getElementById("chart-requests")),
    latency: new uPlot({
      width: width("chart-latency"), height: 220,
      series: [{}, line("hit ms", "#12a150"), line("miss ms", "#d9534f")],
      scales: { y: { distr: 3 } },
    }, data.latency, document.getElementById("chart-latency")),
  };
}

function draw(d) {
  const s = d.stats;
  const hits = s.hits, misses = s.misses;
  text("hit-rate", `${fmt.format(100 * s.hit_rate)} %`);
  const by = s.hits_by_lookup || {};
  text("hit-split", `exact ${by.exact || 0} · semantic ${by.semantic || 0} · coalesced ${by.coalesced || 0}`);
  text("requests", fmt.format(hits + misses));
  text("request-split", `${hits} hits · ${misses} misses`);
  text("tokens-saved", fmt.format(s.tokens_saved));
  let money = 0;
  const models = Object.entries(d.models).sort((a, b) => b[1].hits - a[1].hits);
  for (const [model, m] of models) {
    const [pin, pout] = priceOf(model);
    money += (m.prompt_tokens * pin + m.completion_tokens * pout) / 1e6;
  }
  text("money-saved", usd.format(money));
  const now = d.now;
  const hitMs = now.hit_count ? (1000 * now.hit_seconds) / now.hit_count : null;
  const missMs = now.miss_count ? (1000 * now.miss_seconds) / now.miss_count : null;
  const ms = (v) => (v === null ? "–" : `${fmt.format(v)} ms`);
  text("latency", `${ms(hitMs)} / ${ms(missMs)}`);
  text("entries", s.store ? `${fmt.format(s.store.entries)} entries` : "unreachable");
  text("store-bytes", s.store && s.store.bytes != null ? `${d.store_kind} · ${bytes(s.store.bytes)}` : d.store_kind);
  text("setup", `semantic matching ${d.semantic.state}`);
  text("updated", `updated ${new Date(now.t * 1000).toLocaleTimeString()}`);
  counts("miss-reasons", s.miss_reasons);
  counts("rejections", s.semantic_rejections);
  counts("audits", s.audits);
  const groups = d.groups.length ? d.groups : [null];
  rows("groups", groups, (g) => g === null
    ? [["none yet", false]]
    : [[g.group, false], [lineOf(g.threshold_offset), false], [g.lookups, true],
      [g.evidence.compared, true], [g.evidence.different, true],
      [g.wrong_hit_rate === null ? "too little evidence" : interval(g.wrong_hit_rate), true],
      [g.shadow.would_be_hits ? `${g.shadow.would_be_hits} (${pct(g.shadow.hit_rate)})` : "–", true]]);
  rows("top-entries", d.top_entries, (e) => [[e.entry_id, false], [e.model, false], [e.hits, true]]);
  rows("models", models, ([model, m]) => {
    const [pin, pout] = priceOf(model);
    const saved = (m.prompt_tokens * pin + m.completion_tokens * pout) / 1e6;
    return [[model, false], [m.hits, true], [m.prompt_tokens, true], [m.completion_tokens, true],
      [priceInput(model, 0), false], [priceInput(model, 1), false], [usd.format(saved), true]];
  });
  const data = series([...d.history, now]);
  if (charts === null) charts = makeCharts(data);
  else { charts.requests.setData(data.requests); charts.latency.setData(data.latency); }
}

async function refresh() {
  try {
    const response = await fetch("/dashboard/data", { credentials: "same-origin", cache: "no-store" });
    if (response.status === 401) { window.location.assign("/dashboard"); return; }
    if (!response.ok) throw new Error(`/dashboard/data answered ${response.status}`);
    draw(await response.json());
  } catch (e) {
    text("updated", `not updated: ${e.message}`);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  refresh();
  setInterval(refresh, POLL_MS);
});
