// scalecube console: polls GET /api/state every second and draws the panels (the charts live, each with its data's age); actions are confirmed, then
// POSTed as JSON; the server's timeline says what each did and what it measured. uPlot (vendored) draws charts.

const POLL_MS = 1000;
const MAX_POINTS = 300; // 5 minutes at one point a second
const CLUSTER_SERVICES = ["api", "auth", "router", "shard-a", "shard-b"];
const GROUPS = [
  ["lb", "balancer (HAProxy)"], ["lb-python", "balancer (Python)"], ["api", "api (X: clones)"],
  ["auth", "auth (Y: its own service)"], ["router", "router (Z: by data)"], ["shard-a", "shard-a"], ["shard-b", "shard-b"],
  ["redis", "Redis: sessions, cache (primary at start)"], ["redis-replica", "Redis replica"],
  ["redis-sentinel-1", "Sentinel"], ["redis-sentinel-2", "Sentinel"], ["redis-sentinel-3", "Sentinel"],
  ["auth-redis", "auth's Redis"], ["directory-redis", "router's Redis (directory)"],
  ["shard-a-redis", "shard-a's Redis"], ["shard-b-redis", "shard-b's Redis"],
  ["prometheus", "Prometheus"], ["locust", "Locust master"], ["locust-worker", "Locust workers"], ["console", "console"],
];
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

const $ = (selector) => document.querySelector(selector);
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-") || key === "title") node.setAttribute(key, value);
    else node[key] = value;
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
};
const fmt = (value, digits = 1) => (value === undefined || value === null || Number.isNaN(value) ? "–" : value.toFixed(digits));
const ms = (seconds) => (seconds === undefined ? undefined : seconds * 1000);
const duration = (s) => (s === null || s === undefined ? "–" : s < 120 ? `${s.toFixed(0)} s` : s < 7200 ? `${(s / 60).toFixed(0)} min` : `${(s / 3600).toFixed(1)} h`);

class LiveChart {
  constructor(target, { unit = "", transform = (v) => v } = {}) {
    this.target = target;
    this.unit = unit;
    this.transform = transform;
    this.times = [];
    this.series = new Map(); // label -> values aligned with times
    this.plot = null;
    this.keys = "";
  }

  push(time, values) {
    this.target.dataset.last = JSON.stringify(values); // what this point drew, for a reader of the page (the tests)
    this.times.push(time);
    for (const label of Object.keys(values)) {
      if (!this.series.has(label)) this.series.set(label, new Array(this.times.length - 1).fill(null));
    }
    for (const [label, column] of this.series) {
      const value = values[label];
      column.push(value === undefined || value === null ? null : this.transform(value));
    }
    if (this.times.length > MAX_POINTS) {
      this.times.shift();
      for (const column of this.series.values()) column.shift();
    }
    for (const [label, column] of this.series) if (column.every((v) => v === null)) this.series.delete(label);
    const labels = [...this.series.keys()];
    const data = [this.times, ...labels.map((l) => this.series.get(l))];
    if (labels.join("|") !== this.keys || !this.plot) {
      this.keys = labels.join("|");
      this.plot?.destroy();
      this.plot = new uPlot(
        {
          width: Math.max(360, this.target.clientWidth || 480),
          height: 150,
          series: [{}, ...labels.map((label, i) => ({ label, stroke: PALETTE[i % PALETTE.length], width: 1.5, value: (u, v) => fmt(v) + this.unit }))],
          axes: [{}, { size: 55 }],
          scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
          legend: { live: false },
        },
        data,
        this.target,
      );
    } else {
      this.plot.setData(data);
    }
  }
}

const charts = {
  rates: new LiveChart($("#chart-rates"), { unit: "/s" }),
  workers: new LiveChart($("#chart-workers"), { unit: "/s" }),
  latency: new LiveChart($("#chart-latency"), { unit: " ms", transform: (v) => v * 1000 }),
  errors: new LiveChart($("#chart-errors"), { unit: " %", transform: (v) => v * 100 }),
};

let lastEvent = 0;
let lastState = null;

// api-2 rather than scalecube-api-2: the project's prefix is in the header (the full name in the tooltip).
const shortName = (c) => (c.number ? `${c.service}-${c.number}` : c.service);

function containerRow(container, metrics) {
  const key = `${container.service}/${container.instance}`;
  const inst = metrics?.instances ?? {};
  const running = container.state === "running";
  const level = !running ? "down" : container.health === "starting" ? "starting" : container.health === "unhealthy" ? "down" : "up";
  const isCluster = CLUSTER_SERVICES.includes(container.service);
  const row = el(
    "div",
    { class: `container ${level}`, "data-testid": "container", "data-service": container.service, "data-name": container.name, "data-id": container.id, "data-state": container.state, "data-health": container.health, "data-restarts": String(container.restarts) },
    el("strong", { title: container.name }, shortName(container)),
    el("span", { class: `badge ${container.state}` }, container.state),
    container.health !== "-" ? el("span", { class: `badge ${container.health}` }, container.health) : null,
    el("span", { title: "uptime" }, `up ${duration(container.uptime_s)}`),
    el("span", { title: "restarts by the engine", "data-testid": "restarts" }, `↺ ${container.restarts}`),
    container.ip ? el("span", { class: "num", title: "address" }, container.ip) : null,
  );
  if (isCluster && running) {
    const rate = inst.rate?.[key];
    row.append(
      el("span", { class: "num", "data-testid": "container-rate", "data-rate": String(rate ?? 0) }, `${fmt(rate)} req/s`),
      el("span", { class: "num" }, `p50 ${fmt(ms(inst.p50?.[key]))} · p95 ${fmt(ms(inst.p95?.[key]))} · p99 ${fmt(ms(inst.p99?.[key]))} ms`),
      el("span", { class: "num" }, `5xx ${fmt((inst.errors?.[key] ?? 0) * 100)} %`),
    );
    // Every worker its master keeps: from Prometheus (the master's series), or the backend's own status.
    const slots = new Set(Object.keys(metrics?.workers?.inflight ?? {}).filter((k) => k.startsWith(key + "/")).map((k) => k.slice(key.length + 1)));
    for (const w of container.workers ?? []) slots.add(String(w.slot));
    const workers = [...slots].sort((a, b) => Number(a) - Number(b));
    const list = el("div", { class: "workers" });
    for (const slot of workers) {
      const wkey = `${key}/${slot}`;
      const w = metrics?.workers ?? {};
      list.append(
        el(
          "span",
          { class: "worker num", "data-testid": "worker", "data-slot": slot, "data-rate": String(w.rate?.[wkey] ?? 0) },
          `worker ${slot}: ${fmt(w.rate?.[wkey])}/s · p95 ${fmt(ms(w.p95?.[wkey]))} ms · in flight ${w.inflight?.[wkey] ?? 0} · ↺ ${w.restarts?.[wkey] ?? 0}`,
        ),
      );
    }
    row.append(list);
  }
  return row;
}

function renderTopology(state) {
  const topology = state.topology;
  const target = $("#topology");
  if (!topology) return;
  $("#project").textContent = `${topology.kind} project ${topology.project}`;
  const byService = new Map();
  for (const c of topology.containers) {
    if (c.service === "secrets") continue; // the one-shot that wrote the secrets
    if (!byService.has(c.service)) byService.set(c.service, []);
    byService.get(c.service).push(c);
  }
  const known = new Set(GROUPS.map(([s]) => s));
  const groups = [...GROUPS, ...[...byService.keys()].filter((s) => !known.has(s)).map((s) => [s, s])];
  const fragment = document.createDocumentFragment();
  for (const [service, title] of groups) {
    const containers = byService.get(service);
    if (!containers) continue;
    const group = el("div", { class: "group", "data-testid": "group", "data-service": service });
    const header = el("div", { class: "title" }, `${title} `);
    const svc = state.metrics?.services ?? {};
    if (service === "lb") {
      const rate = state.metrics?.balancer?.rate?.api;
      header.append(el("span", { class: "num", "data-testid": "balancer-rate", "data-rate": String(rate ?? 0) }, `→ api ${fmt(rate)} req/s`));
    } else if (CLUSTER_SERVICES.includes(service)) {
      header.append(
        el("span", { class: "num", "data-testid": "service-rate", "data-service": service, "data-rate": String(svc.rate?.[service] ?? 0) },
          `${fmt(svc.rate?.[service])} req/s · p95 ${fmt(ms(svc.p95?.[service]))} ms · 5xx ${fmt((svc.errors?.[service] ?? 0) * 100)} %`),
      );
    }
    group.append(header, ...containers.map((c) => containerRow(c, state.metrics)));
    fragment.append(group);
  }
  target.replaceChildren(fragment);
  fillSelect(".containers", topology.containers.filter((c) => c.state === "running" && c.service !== "console").map((c) => c.name));
  fillSelect(".cluster-containers", topology.containers.filter((c) => c.state === "running" && CLUSTER_SERVICES.includes(c.service)).map((c) => c.name));
}

function fillSelect(selector, names) {
  for (const select of document.querySelectorAll(selector)) {
    if ([...select.options].map((o) => o.value).join("|") === names.join("|")) continue;
    const chosen = select.value;
    select.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
    if (names.includes(chosen)) select.value = chosen;
  }
}

function renderShared(state) {
  const shared = state.shared;
  const cache = state.metrics?.cache ?? { rate: {}, total: {} };
  const rows = [];
  const row = (name, value, testid) => el("tr", {}, el("td", {}, name), el("td", { class: "num", "data-testid": testid ?? "" }, value));
  if (shared) {
    const s = shared.sessions;
    rows.push(row("sessions in Redis", s.status === "up" ? `${s.capped ? "≥ " : ""}${s.count}` : `down: ${s.error}`, "sessions"));
    if (shared.shards.status === "up") {
      for (const [name, shard] of Object.entries(shared.shards.shards)) rows.push(row(`users on ${name}`, shard.status === "up" ? String(shard.users) : "down", `users-${name}`));
    } else rows.push(row("users per shard", `down: ${shared.shards.error}`));
  }
  for (const outcome of ["hit", "stale", "waited", "computed"]) {
    rows.push(row(`cache ${outcome === "computed" ? "misses (recomputed)" : outcome}`, `${fmt(cache.rate[outcome] ?? 0, 2)}/s · ${fmt(cache.total[outcome] ?? 0, 0)} in all`, `cache-${outcome}`));
  }
  $("#shared").replaceChildren(el("table", { class: "kv" }, ...rows));
  const l = state.locust;
  $("#locust").textContent = l ? `Locust: ${l.state}, ${l.users} users, ${fmt(l.rps)} req/s, ${l.workers} workers` : "Locust: unavailable";
}

// The live charts (raw counters over a few seconds, scraped every second), each with its data's age when drawn:
// now minus the Prometheus sample time of the stalest series it is drawn from.
function pushCharts(state) {
  const m = state.metrics;
  if (!m) return;
  const live = m.live;
  const t = state.time;
  const names = new Map((state.topology?.containers ?? []).map((c) => [`${c.service}/${c.instance}`, shortName(c)]));
  const rates = {};
  for (const [key, value] of Object.entries(live.instances)) if (key.startsWith("api/")) rates[names.get(key) ?? key] = value;
  if (live.balancer.api !== undefined) rates["balancer → api"] = live.balancer.api;
  charts.rates.push(t, rates);
  const workers = {};
  for (const [key, value] of Object.entries(live.workers)) {
    const cut = key.lastIndexOf("/");
    const container = key.slice(0, cut);
    workers[`${names.get(container) ?? container}/w${key.slice(cut + 1)}`] = value;
  }
  charts.workers.push(t, workers);
  charts.latency.push(t, live.latency);
  charts.errors.push(t, live.errors);
  $("#live-window").textContent = live.window;
  const now = Date.now() / 1000;
  for (const badge of document.querySelectorAll('[data-testid="age"]')) {
    const sampled = live.sampled_at[badge.dataset.chart];
    const age = sampled === null || sampled === undefined ? null : Math.max(0, now - sampled);
    badge.dataset.age = age === null ? "" : age.toFixed(2);
    badge.textContent = age === null ? "no data" : `${age.toFixed(1)} s behind`;
    badge.classList.toggle("stale", age !== null && age > 2);
  }
}

function renderTimeline(events) {
  const list = $("#timeline");
  for (const e of events) {
    lastEvent = Math.max(lastEvent, e.id);
    const when = new Date(e.at * 1000).toLocaleTimeString();
    list.append(el("li", { class: e.kind, "data-testid": "event", "data-kind": e.kind, "data-action": e.action }, `${when} [${e.action}] ${e.text}`));
  }
  if (events.length) list.scrollTop = list.scrollHeight;
}

async function poll() {
  try {
    const response = await fetch(`/api/state?after=${lastEvent}`, { cache: "no-store" });
    if (!response.ok) throw new Error(`GET /api/state: ${response.status}`);
    const state = await response.json();
    lastState = state;
    renderTopology(state);
    renderShared(state);
    pushCharts(state);
    renderTimeline(state.timeline);
    const down = Object.entries(state.unavailable);
    $("#unavailable").textContent = down.length ? `unavailable: ${down.map(([k, v]) => `${k} (${v})`).join("; ")}` : "";
    $("#freshness").textContent = `updated ${new Date(state.time * 1000).toLocaleTimeString()}`;
    $("#freshness").dataset.time = String(state.time);
  } catch (error) {
    $("#freshness").textContent = `console unreachable: ${error.message}`;
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

function confirmed(text) {
  const dialog = $("#confirm");
  $("#confirm-text").textContent = text;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
  });
}

for (const form of document.querySelectorAll("form[data-action]")) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {};
    for (const field of form.querySelectorAll("input[name], select[name]")) {
      const kind = field.dataset.kind;
      body[field.name] = kind === "int" ? parseInt(field.value, 10) : kind === "float" ? parseFloat(field.value) : field.value;
    }
    const action = form.dataset.action;
    const summary = Object.entries(body).map(([k, v]) => `${k}=${v}`).join(", ");
    if (!(await confirmed(`${action.replace("-", " ")}${summary ? ` (${summary})` : ""}?`))) return;
    const response = await fetch(`/api/actions/${action}`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    if (response.status !== 202) {
      const answer = await response.json().catch(() => ({}));
      renderTimeline([{ id: 0, at: Date.now() / 1000, kind: "failed", action, text: `refused: ${answer.message ?? response.status}` }]);
    }
  });
}

poll();
