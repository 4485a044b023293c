// The ward console's page logic: sign in with a pasted token (kept in
// sessionStorage, sent only in the Authorization header), poll the admin
// API (one call per panel, never one per device), render the panels in
// place, and run the actions the token's role allows. All wording comes
// from wording.js.

import * as W from "/console/wording.js";

const TOKEN_KEY = "wardgate.console.token";
const POLL_MS = 3000;
const VERIFY_EVERY = 5; // polls between audit chain walks
const REVIEW_EVERY = 10; // polls between access reviews
const READINGS_PER_DEVICE = 30;
const AUDIT_ROWS = 25;

const $ = (id) => document.getElementById(id);

let session = null; // GET /api/v1/session
let timer = null;
let polls = 0;
let pending = null; // the action awaiting confirmation
const rows = new Map(); // device id -> row elements

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

// Replace an element's children, skipping absent ones (null, undefined, false).
function put(target, ...children) {
  target.replaceChildren(...children.filter((c) => c !== null && c !== undefined && c !== false));
}

// A {title, what, why, next} entry as a block; `detail` is the gateway's own message.
function explain(target, entry, tone, detail) {
  put(target, 
    el("p", { class: "title" }, el("strong", { text: entry.title })),
    entry.what ? el("p", { class: "what", text: entry.what }) : null,
    entry.why ? el("p", { class: "why", text: entry.why }) : null,
    entry.next ? el("p", { class: "next", text: "What to do: " + entry.next }) : null,
    detail ? el("p", { class: "why", text: "Gateway says: " + detail }) : null,
  );
  target.className = "explain " + (tone || "");
  target.hidden = false;
}

function ago(iso, now) {
  if (!iso) return "never";
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return s + " s ago";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  if (s < 86400) return Math.round(s / 3600) + " h ago";
  return new Date(iso).toLocaleString();
}

async function api(path, { method = "GET", body, totp } = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const headers = { Authorization: "Bearer " + token };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (totp) headers["X-Wardgate-TOTP"] = totp;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
      referrerPolicy: "no-referrer",
    });
  } catch (e) {
    return { ok: false, status: 0, code: "network", message: String(e) };
  }
  let json = null;
  try {
    json = await response.json();
  } catch (e) {
    json = null;
  }
  if (response.ok) return { ok: true, status: response.status, body: json };
  const err = (json && json.error) || {};
  return { ok: false, status: response.status, code: err.code || "internal", message: err.message || "" };
}

// ---- sign in / out ----

async function signIn(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
  const r = await api("/api/v1/session");
  if (!r.ok) {
    sessionStorage.removeItem(TOKEN_KEY);
    explain($("login-message"), W.refusal(r.code), "bad", r.message);
    return;
  }
  session = r.body;
  $("login-message").hidden = true;
  $("login").hidden = true;
  $("ward").hidden = false;
  $("sign-out").hidden = false;
  const t = session.token;
  $("whoami").textContent = `Signed in as ${t.name} (${t.role})`;
  $("whoami").hidden = false;
  document.body.dataset.role = t.role;
  rows.clear();
  put($("device-table").tBodies[0]);
  polls = 0;
  await poll();
}

function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  session = null;
  if (timer) clearTimeout(timer);
  timer = null;
  $("ward").hidden = true;
  $("login").hidden = false;
  $("sign-out").hidden = true;
  $("whoami").hidden = true;
  $("token").value = "";
  delete document.body.dataset.role;
}

// ---- polling ----

async function poll() {
  if (timer) clearTimeout(timer);
  if (!session) return;
  const n = polls++;
  const [devices, readings, status, audit, ota, alerts] = await Promise.all([
    api("/api/v1/devices"),
    api(`/api/v1/readings?last=${READINGS_PER_DEVICE}`),
    api("/api/v1/status"),
    api(`/api/v1/audit?limit=${AUDIT_ROWS}`),
    api("/api/v1/ota/status"),
    api("/api/v1/alerts?limit=50"),
  ]);
  if (!session) return;
  if (devices.status === 401) {
    // The token was revoked or expired while signed in.
    signOut();
    explain($("login-message"), W.refusal(devices.code), "bad", devices.message);
    return;
  }
  const now = readings.ok ? Date.parse(readings.body.now) : Date.now();
  renderUplink(status);
  renderDevices(devices, readings, ota, now);
  renderCampaign(ota);
  renderAlerts(alerts, now);
  renderAudit(audit);
  if (n % VERIFY_EVERY === 0) renderVerify(await api("/api/v1/audit/verify"));
  if (n % REVIEW_EVERY === 0) await renderAccess();
  $("updated").textContent = "Updated " + new Date().toLocaleTimeString() + "; refreshes every " + POLL_MS / 1000 + " s.";
  if (session) timer = setTimeout(poll, POLL_MS);
}

function failed(target, r) {
  explain(target, W.refusal(r.code), "bad", r.message);
}

// ---- uplink ----

function renderUplink(r) {
  const body = $("uplink-body");
  if (!r.ok) return failed(body, r);
  const u = r.body.uplink;
  if (!u) return explain(body, W.UPLINK.off, "warn");
  const facts = [];
  facts.push(`${u.outbox_rows} message(s) waiting in the outbox`);
  if (u.oldest_message_age_seconds !== null && u.oldest_message_age_seconds !== undefined) {
    facts.push(`oldest waiting ${Math.round(u.oldest_message_age_seconds)} s`);
  }
  if (u.broker) facts.push(`hospital broker ${u.broker}`);
  const entry = u.connected ? W.UPLINK.connected : W.UPLINK.disconnected;
  explain(body, entry, u.connected ? "ok" : "bad", u.connected ? null : u.last_error);
  body.append(el("p", { class: "why", id: "uplink-facts", text: facts.join("; ") + "." }));
}

// ---- devices ----

function connectionOf(activity) {
  if (!activity || activity.sessions === 0) return "offline";
  return activity.sessions > 1 ? "duplicate" : "connected";
}

function badge(cls, text, title) {
  return el("span", { class: "badge " + cls, text, title });
}

function chart(samples) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "chart");
  svg.setAttribute("viewBox", "0 0 160 36");
  svg.setAttribute("role", "img");
  const series = new Map();
  samples.forEach((s, i) => {
    for (const [kind, value] of s.values) {
      if (!series.has(kind)) series.set(kind, []);
      series.get(kind).push([i, value]);
    }
  });
  const labels = [];
  let k = 0;
  for (const [kind, points] of series) {
    if (k >= 4) break;
    const values = points.map((p) => p[1]);
    const lo = Math.min(...values);
    const hi = Math.max(...values);
    const span = hi - lo || 1;
    const n = Math.max(samples.length - 1, 1);
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("class", "s" + k);
    line.setAttribute(
      "points",
      points.map(([i, v]) => `${((i / n) * 156 + 2).toFixed(1)},${(34 - ((v - lo) / span) * 32).toFixed(1)}`).join(" "),
    );
    svg.append(line);
    const v = W.VITAL[kind] || { label: kind, unit: "" };
    labels.push(`${v.label} ${values[values.length - 1]} ${v.unit}`);
    k++;
  }
  svg.setAttribute("aria-label", labels.join(", ") || "no readings yet");
  return [svg, labels];
}

function actionButtons(device) {
  const may = session.may;
  const out = [];
  if (device.state === "active" && may.quarantine) out.push(["quarantine", "Quarantine", ""]);
  if (device.state === "quarantined" && may.reactivate) out.push(["reactivate", "Release", ""]);
  if (device.state !== "revoked" && may.revoke) out.push(["revoke", "Revoke", "danger"]);
  return out.map(([action, label, cls]) => {
    const b = el("button", { type: "button", class: cls || null, "data-action": action, "data-device": device.id, text: label });
    b.addEventListener("click", () => openConfirm(action, device.id));
    return b;
  });
}

function renderDevices(devices, readings, ota, now) {
  const tbody = $("device-table").tBodies[0];
  if (!devices.ok) {
    explain($("notice"), W.refusal(devices.code), "bad", devices.message);
    return;
  }
  const live = readings.ok ? readings.body.devices : {};
  const updates = new Map();
  if (ota.ok) {
    for (const c of ota.body.campaigns || []) {
      for (const d of c.devices || []) if (!updates.has(d.device_id)) updates.set(d.device_id, d);
    }
  }
  const list = devices.body;
  const counts = { active: 0, quarantined: 0, revoked: 0 };
  const seen = new Set();
  for (const d of list) {
    counts[d.state] = (counts[d.state] || 0) + 1;
    seen.add(d.id);
    let row = rows.get(d.id);
    if (!row) {
      row = { tr: el("tr", { "data-device-id": d.id }), cells: [] };
      for (let i = 0; i < 8; i++) {
        const td = el("td");
        row.cells.push(td);
        row.tr.append(td);
      }
      rows.set(d.id, row);
      tbody.append(row.tr);
    }
    const a = live[d.id];
    const samples = (a && a.samples) || [];
    const vitals = samples.length ? samples[samples.length - 1].values.map((v) => v[0]) : [];
    const conn = connectionOf(a);
    const st = W.DEVICE_STATE[d.state] || { title: d.state, next: "" };
    const cn = W.CONNECTION[conn];
    const [svg, labels] = chart(samples);
    const upd = updates.get(d.id);
    row.tr.dataset.state = d.state;
    row.tr.dataset.connection = conn;
    put(row.cells[0], el("strong", { text: d.id }), el("div", { class: "hint", text: `${d.manufacturer} ${d.model}` }));
    put(row.cells[1], W.deviceKind(vitals) || d.model);
    put(row.cells[2], badge(d.state, st.title, `${st.what} ${st.next}`), el("div", { class: "hint", text: st.next }));
    put(row.cells[3], badge(conn, cn.title, `${cn.what} ${cn.next}`), conn === "connected" ? null : el("div", { class: "hint", text: cn.next }));
    put(row.cells[4], 
      d.firmware_version,
      upd ? el("div", { class: "hint" }, badge(upd.state, (W.UPDATE[upd.state] || { title: upd.state }).title)) : null,
    );
    put(row.cells[5], ago(a && a.last_reading_at, now));
    put(row.cells[6], svg, el("div", { class: "latest", text: labels.join(" · ") }));
    const buttons = actionButtons(d);
    put(row.cells[7], ...buttons);
  }
  for (const [id, row] of rows) {
    if (!seen.has(id)) {
      row.tr.remove();
      rows.delete(id);
    }
  }
  $("devices-empty").hidden = list.length > 0;
  $("device-counts").textContent = `(${counts.active} active, ${counts.quarantined} quarantined, ${counts.revoked} revoked)`;
}

// ---- actions ----

function openConfirm(action, id) {
  const a = W.ACTION[action];
  askConfirm({
    title: `${a.title} ${id}?`,
    entry: a,
    tone: action === "revoke" ? "bad" : "warn",
    path: `/api/v1/devices/${encodeURIComponent(id)}/${action}`,
    totp: session.needs_totp[action],
    body: (reason) => (reason ? { reason } : {}),
    done: (r) => ({ title: `${id} ${r.body.changed ? W.DONE[action] : W.DONE.unchanged}`, next: a.next }),
  });
}

// Confirm a change: explain it, take a reason and (for a TOTP-bound token) the code.
function askConfirm(p) {
  pending = p;
  $("confirm-title").textContent = p.title;
  explain($("confirm-explain"), p.entry, p.tone);
  $("confirm-reason").value = "";
  $("confirm-totp").value = "";
  $("confirm-totp-row").hidden = !p.totp;
  $("confirm").hidden = false;
  $("confirm-reason").focus();
}

function closeConfirm() {
  pending = null;
  $("confirm").hidden = true;
}

async function confirmAction() {
  if (!pending) return;
  const p = pending;
  const reason = $("confirm-reason").value.trim();
  const totp = $("confirm-totp").value.trim();
  const r = await api(p.path, { method: "POST", body: p.body(reason), totp: totp || undefined });
  if (!r.ok && (r.code === "totp_required" || r.code === "totp_invalid" || r.code === "totp_reused")) {
    // Keep the dialog open for the code.
    $("confirm-totp-row").hidden = false;
    explain($("confirm-explain"), W.refusal(r.code), "bad", r.message);
    return;
  }
  closeConfirm();
  if (r.ok) explain($("notice"), p.done(r), "ok");
  else explain($("notice"), W.refusal(r.code), "bad", r.message);
  await poll();
}

// ---- campaign ----

function renderCampaign(r) {
  const body = $("campaign-body");
  if (!r.ok) {
    if (r.status === 404) return explain(body, W.PANEL_OFF.ota, "");
    return failed(body, r);
  }
  const campaigns = r.body.campaigns || [];
  if (!campaigns.length) {
    put(body, el("p", { text: "No update campaign has been assigned to this ward." }));
    return;
  }
  const c = campaigns[0];
  const parts = [
    el("p", {}, el("strong", { text: `Campaign ${c.campaign_id}` }), ` — ${c.target} ${c.version || ""}, wave ${c.wave + 1}, ${c.state}`),
  ];
  if (c.deferred) parts.push(el("p", { class: "why", text: "Installs wait: " + c.deferred }));
  if (c.note) parts.push(el("p", { class: "why", text: "Last problem: " + c.note }));
  const table = el("table", { id: "campaign-table" }, el("thead", {}, el("tr", {}, ...["Device", "Wave", "Update", "What to do"].map((h) => el("th", { text: h })))));
  const tb = el("tbody");
  for (const d of c.devices || []) {
    const u = W.UPDATE[d.state] || { title: d.state, next: "" };
    tb.append(el("tr", { "data-device-id": d.device_id, "data-update": d.state },
      el("td", { text: d.device_id }), el("td", { text: String(d.wave + 1) }),
      el("td", {}, badge(d.state, u.title), el("div", { class: "hint", text: d.detail })),
      el("td", { text: u.next })));
  }
  table.append(tb);
  parts.push(table);
  put(body, ...parts);
}

// ---- alerts ----

function renderAlerts(r, now) {
  const body = $("alerts-body");
  if (!r.ok) {
    if (r.status === 404) return explain(body, W.PANEL_OFF.alerts, "");
    return failed(body, r);
  }
  const open = (r.body.alerts || []).filter((a) => !a.acknowledged_at);
  if (!open.length) {
    put(body, el("p", { text: "No open alerts." }));
    return;
  }
  const items = open.map((a) => {
    const w = W.ALERT[a.kind] || W.ALERT.unknown;
    const box = el("div", { class: "alert", "data-alert-id": String(a.id) });
    const text = el("div");
    explain(text, w, a.quarantined ? "bad" : "warn");
    put(
      box,
      el("p", {}, el("strong", { text: a.device || a.subject }), ` — ${ago(a.at, now)}`),
      text,
      a.quarantined ? el("p", { class: "next", text: W.ALERT_QUARANTINED }) : null,
      el("pre", { class: "evidence", text: "Evidence: " + JSON.stringify(a.evidence) }),
    );
    if (session.may.quarantine) {
      const ack = el("button", { type: "button", "data-alert-action": "acknowledge", text: "Acknowledge" });
      ack.addEventListener("click", () =>
        askConfirm({
          title: `Acknowledge alert ${a.id}?`,
          entry: W.ACKNOWLEDGE,
          tone: "warn",
          path: `/api/v1/alerts/${a.id}/acknowledge`,
          // Acknowledging is a change: a TOTP-bound token needs its code.
          totp: session.token.totp_bound,
          body: (note) => (note ? { note } : {}),
          done: () => ({ title: `Alert ${a.id} acknowledged.`, next: W.ACKNOWLEDGE.next }),
        }),
      );
      box.append(ack);
    }
    return box;
  });
  put(body, ...items);
}

// ---- audit ----

function renderVerify(r) {
  const target = $("audit-verify");
  if (!r.ok) return failed(target, r);
  const intact = r.body.intact;
  explain(target, intact ? W.AUDIT_CHAIN.intact : W.AUDIT_CHAIN.broken, intact ? "ok" : "bad",
    `${r.body.rows} entries checked` + (intact ? "" : `, ${r.body.problems.length} problem(s): ${JSON.stringify(r.body.problems.slice(0, 3))}`));
  target.dataset.intact = String(intact);
}

function renderAudit(r) {
  const tbody = $("audit-table").tBodies[0];
  if (!r.ok) return failed($("audit-verify"), r);
  put(tbody, ...(r.body.rows || []).map((row) =>
    el("tr", { "data-action": row.action, "data-subject": row.subject },
      el("td", { text: String(row.id) }), el("td", { text: new Date(row.ts).toLocaleTimeString() }),
      el("td", { text: row.actor }), el("td", { text: row.action }), el("td", { text: row.subject }),
      el("td", {}, badge(row.outcome === "refused" ? "bad" : row.outcome === "allowed" ? "ok" : "offline", row.outcome)))));
}

// ---- access review ----

async function renderAccess() {
  const body = $("access-body");
  if (!session.may.review_access) return explain(body, W.PANEL_OFF.access, "");
  const r = await api("/api/v1/access/review");
  if (!r.ok) return failed(body, r);
  const table = el("table", { id: "access-table" }, el("thead", {}, el("tr", {}, ...["Token", "Role", "Last used", "Expires", "Needs attention"].map((h) => el("th", { text: h })))));
  const tb = el("tbody");
  for (const e of r.body.tokens || []) {
    const t = e.record;
    tb.append(el("tr", {},
      el("td", { text: `${t.name} (${t.id})` }), el("td", { text: t.role }),
      el("td", { text: t.last_used_at ? new Date(t.last_used_at).toLocaleString() : "never" }),
      el("td", { text: t.expires_at ? new Date(t.expires_at).toLocaleDateString() : "never" }),
      el("td", { text: (e.flags || []).map((f) => W.REVIEW_FLAG[f] || f).join(" ") || "—" })));
  }
  table.append(tb);
  put(body, el("p", { class: "why", text: `Tokens unused for ${r.body.stale_after_days} days are marked stale.` }), table);
}

// ---- start ----

document.addEventListener("DOMContentLoaded", () => {
  $("sign-in").addEventListener("click", () => {
    const token = $("token").value.trim();
    if (token) signIn(token);
  });
  $("token").addEventListener("keydown", (e) => {
    if (e.key === "Enter") $("sign-in").click();
  });
  $("sign-out").addEventListener("click", signOut);
  $("confirm-go").addEventListener("click", confirmAction);
  $("confirm-cancel").addEventListener("click", closeConfirm);
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) signIn(saved);
});
