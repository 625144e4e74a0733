// The operator dashboard: sign in with the operator token, then draw the snapshots the
// server pushes on /v1/operator/live (docs/dashboard.md). No data is in the page itself.
import L from "leaflet";
import "leaflet/dist/leaflet.css";
import "./style.css";

const TOKEN_KEY = "coopride.operator_token";
const config = JSON.parse(document.getElementById("coop-config")?.textContent || "{}");
const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- formatting

const int = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"));
const secs = (s) => (s === null || s === undefined ? "–" : s < 100 ? `${s.toFixed(1)} s` : `${Math.round(s)} s`);
const pct = (r) => (r === null || r === undefined ? "–" : `${(r * 100).toFixed(1)}%`);
const money = (cents, currency = "USD") =>
  (cents / 100).toLocaleString("en-US", { style: "currency", currency });

function setKpi(name, value, text) {
  for (const el of document.querySelectorAll(`[data-kpi="${name}"]`)) {
    el.dataset.value = value === null || value === undefined ? "" : String(value);
    el.textContent = text;
  }
}

// ---------------------------------------------------------------- sign-in

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

function showSignIn(message = "") {
  $("sign-in").hidden = false;
  $("board").hidden = true;
  $("sign-out").hidden = true;
  $("sign-in-error").textContent = message;
  setConn("off", "signed out");
}

async function fetchSnapshot(t) {
  const r = await fetch("/v1/operator/dashboard", {
    headers: { Authorization: `Bearer ${t}` },
    cache: "no-store",
  });
  if (r.status === 401 || r.status === 403) {
    const problem = await r.json().catch(() => ({}));
    throw Object.assign(new Error(problem.detail || "not an operator token"), { auth: true });
  }
  if (!r.ok) throw new Error(`the server answered ${r.status}`);
  return r.json();
}

async function signIn(t) {
  try {
    const snap = await fetchSnapshot(t);
    sessionStorage.setItem(TOKEN_KEY, t);
    $("sign-in").hidden = true;
    $("board").hidden = false;
    $("sign-out").hidden = false;
    ensureMap();
    render(snap);
    loadAreas(t);
    connect();
  } catch (err) {
    if (err.auth) sessionStorage.removeItem(TOKEN_KEY);
    showSignIn(err.auth ? `Refused: ${err.message}` : `Cannot reach the server: ${err.message}`);
  }
}

$("sign-in-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const t = $("token").value.trim();
  $("token").value = "";
  if (t) signIn(t);
});

$("sign-out").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  if (socket) socket.close(1000, "signed out");
  socket = null;
  showSignIn();
});

// ---------------------------------------------------------------- live socket

let socket = null;
let retryMs = 500;

function setConn(state, text) {
  $("conn-dot").className = `dot ${state}`;
  $("conn-text").textContent = text;
}

function connect() {
  const t = token();
  if (!t) return showSignIn();
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${scheme}//${location.host}/v1/operator/live?token=${encodeURIComponent(t)}`);
  socket = ws;
  setConn("wait", "connecting");
  ws.onopen = () => {
    retryMs = 500;
    setConn("on", "live");
  };
  ws.onmessage = (ev) => {
    const frame = JSON.parse(ev.data);
    if (frame.type === "snapshot") render(frame);
    else if (frame.type === "error") setConn("wait", `server: ${frame.detail}`);
  };
  ws.onclose = (ev) => {
    if (socket !== ws) return; // replaced or signed out
    socket = null;
    if (ev.code === 4401 || ev.code === 4403) {
      sessionStorage.removeItem(TOKEN_KEY);
      return showSignIn("The server no longer accepts this token.");
    }
    setConn("off", "reconnecting");
    setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, 10000);
  };
}

// ---------------------------------------------------------------- map

let map = null;
let cellLayer, tripLayer, requestLayer, driverLayer, areaLayer;
let fitted = false;

function ensureMap() {
  if (map) return;
  map = L.map("map", { preferCanvas: true, zoomSnap: 0.25, attributionControl: false });
  if (config.tile_url) {
    L.control.attribution({ prefix: false }).addTo(map);
    L.tileLayer(config.tile_url, { attribution: config.tile_attribution || "", maxZoom: 19 }).addTo(map);
    $("projection-note").textContent = "";
  } else {
    // No tile server configured: the city is drawn on a plain Web Mercator projection,
    // which works offline. Set COOP_OPS_TILE_URL for a street map underneath.
    $("map").classList.add("plain");
    $("projection-note").textContent = "plain projection (no tile server configured)";
  }
  areaLayer = L.layerGroup().addTo(map);
  cellLayer = L.layerGroup().addTo(map);
  tripLayer = L.layerGroup().addTo(map);
  requestLayer = L.layerGroup().addTo(map);
  driverLayer = L.layerGroup().addTo(map);
  map.setView([40.754, -73.984], 12);
}

async function loadAreas(t) {
  const r = await fetch("/v1/operator/service-areas", { headers: { Authorization: `Bearer ${t}` } });
  if (!r.ok) return;
  areaLayer.clearLayers();
  for (const area of await r.json()) {
    const rings = area.polygon.coordinates.map((ring) => ring.map(([lng, lat]) => [lat, lng]));
    L.polygon(rings, { color: "#8aa0b8", weight: 1.5, dashArray: "6 4", fill: false, interactive: false })
      .bindTooltip(area.name)
      .addTo(areaLayer);
  }
}

function mix(a, b, t) {
  const p = (h) => [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16));
  const [x, y] = [p(a), p(b)];
  return `#${x.map((v, i) => Math.round(v + (y[i] - v) * t).toString(16).padStart(2, "0")).join("")}`;
}

function drawMap(snap) {
  cellLayer.clearLayers();
  tripLayer.clearLayers();
  requestLayer.clearLayers();
  driverLayer.clearLayers();
  const peak = Math.max(1, ...snap.cells.map((c) => c.online_drivers + c.open_requests));
  for (const c of snap.cells) {
    const total = c.online_drivers + c.open_requests;
    const demand = c.open_requests / total; // 0: all supply, 1: all demand
    L.polygon(c.boundary, {
      color: mix("#2f8fce", "#e4572e", demand),
      weight: 1,
      fillColor: mix("#2f8fce", "#e4572e", demand),
      fillOpacity: 0.18 + 0.5 * Math.sqrt(total / peak),
    })
      .bindTooltip(`${c.h3}<br>${c.online_drivers} drivers · ${c.open_requests} requests`)
      .addTo(cellLayer);
  }
  for (const d of snap.drivers) {
    if (d.target) {
      L.polyline([[d.lat, d.lng], d.target], { color: "#f2b134", weight: 1.5, dashArray: "4 4", opacity: 0.8, interactive: false }).addTo(tripLayer);
    }
    L.circleMarker([d.lat, d.lng], {
      radius: 4.5,
      weight: 1,
      color: "#0b1320",
      fillColor: d.status === "available" ? "#3ddc84" : "#f2b134",
      fillOpacity: 1,
    })
      .bindTooltip(`${d.id} · ${d.status.replace("_", " ")}`)
      .addTo(driverLayer);
  }
  for (const r of snap.requests) {
    L.circleMarker([r.lat, r.lng], { radius: 5, weight: 2, color: "#e4572e", fillColor: "#ffffff", fillOpacity: 0.9 })
      .bindTooltip(`${r.id} · waiting ${r.waiting_s} s`)
      .addTo(requestLayer);
  }
  if (!fitted) {
    const pts = [
      ...snap.drivers.map((d) => [d.lat, d.lng]),
      ...snap.requests.map((r) => [r.lat, r.lng]),
    ];
    if (pts.length) {
      map.fitBounds(L.latLngBounds(pts).pad(0.25), { maxZoom: 14 });
      fitted = true;
    }
  }
}

// ---------------------------------------------------------------- panels

function drawDeciles(values) {
  const svg = $("deciles");
  const peak = Math.max(1, ...values);
  const w = 220 / Math.max(1, values.length);
  svg.innerHTML = "";
  values.forEach((v, i) => {
    const h = Math.max(1, (v / peak) * 56);
    const rect = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    rect.setAttribute("x", String(i * w + 1));
    rect.setAttribute("y", String(60 - h));
    rect.setAttribute("width", String(w - 2));
    rect.setAttribute("height", String(h));
    rect.setAttribute("class", "bar");
    svg.appendChild(rect);
  });
}

function drawRule(rule) {
  const rows = [
    ["Base", money(rule.base_cents, rule.currency)],
    ["Per km", money(rule.per_km_cents, rule.currency)],
    ["Per minute", money(rule.per_minute_cents, rule.currency)],
    ["Minimum", money(rule.minimum_cents, rule.currency)],
    ["Cancellation fee", money(rule.cancellation_fee_cents, rule.currency)],
    ["Cost recovery", rule.cost_recovery_mode.replace("_", " ")],
    ["Fairness weight", String(rule.fairness_weight)],
    ["Commission", money(0, rule.currency)],
  ];
  const table = $("fare-rule");
  table.replaceChildren(
    ...rows.map(([k, v]) => {
      const tr = document.createElement("tr");
      const th = document.createElement("th");
      const td = document.createElement("td");
      th.textContent = k;
      td.textContent = v;
      tr.append(th, td);
      return tr;
    }),
  );
}

function drawProposals(items) {
  const list = $("proposals");
  if (!items.length) {
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = "none open";
    return list.replaceChildren(li);
  }
  list.replaceChildren(
    ...items.map((p) => {
      const li = document.createElement("li");
      const title = document.createElement("div");
      title.className = "p-title";
      title.textContent = p.rationale || p.id;
      const meta = document.createElement("div");
      meta.className = "muted small";
      const t = p.tally;
      meta.textContent = `yes ${t.yes} · no ${t.no} · abstain ${t.abstain} of ${p.eligible_voters} (quorum ${p.quorum_ballots}) · closes ${new Date(p.closes_at).toLocaleString()}`;
      li.append(title, meta);
      return li;
    }),
  );
}

function render(snap) {
  const k = snap.kpis;
  document.body.dataset.seq = String(snap.seq);
  setKpi("online_drivers", k.online_drivers, int(k.online_drivers));
  setKpi("available_drivers", k.available_drivers, int(k.available_drivers));
  setKpi("on_trip_drivers", k.on_trip_drivers, int(k.on_trip_drivers));
  setKpi("open_requests", k.open_requests, int(k.open_requests));
  setKpi("matches_last_minute", k.matches_last_minute, int(k.matches_last_minute));
  setKpi("request_to_offer_p50", k.request_to_offer_s.p50, secs(k.request_to_offer_s.p50));
  setKpi("request_to_offer_p95", k.request_to_offer_s.p95, secs(k.request_to_offer_s.p95));
  setKpi("pickup_eta_p50", k.pickup_eta_s.p50, secs(k.pickup_eta_s.p50));
  setKpi("pickup_eta_p95", k.pickup_eta_s.p95, secs(k.pickup_eta_s.p95));
  setKpi("expiry_rate", k.expiry_rate, pct(k.expiry_rate));
  setKpi("cancellation_rate", k.cancellation_rate, pct(k.cancellation_rate));
  const e = k.earnings;
  setKpi("earnings_period", e.period, e.period);
  setKpi("earnings_gini", e.gini, e.gini.toFixed(3));
  setKpi("earnings_members", e.members, int(e.members));
  setKpi("earnings_total", e.total_cents, money(e.total_cents, snap.fare_rule.currency));
  setKpi("fare_rule_version", snap.fare_rule.version, String(snap.fare_rule.version));
  setKpi("open_proposals", k.open_proposals, int(k.open_proposals));
  $("window-note").textContent =
    `Percentiles and rates over the last ${Math.round(k.window_s / 60)} minutes: ` +
    `${k.request_to_offer_s.samples} requests offered, ${k.pickup_eta_s.samples} assigned, ${k.trips_ended} trips ended.`;
  $("updated").textContent = `updated ${new Date(snap.generated_at).toLocaleTimeString()}`;
  drawDeciles(e.deciles_cents);
  drawRule(snap.fare_rule);
  drawProposals(snap.proposals);
  drawMap(snap);
}

// ---------------------------------------------------------------- start

if (token()) signIn(token());
else showSignIn();
