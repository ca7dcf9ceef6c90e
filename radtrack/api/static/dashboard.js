"use strict";
// The radtrack dashboard. Reads go to POST /graphql; the live feed comes over the WebSocket at
// /graphql (graphql-transport-ws); the plots are dashboard-plots.js. The token lives in this
// tab's sessionStorage only. Data from the server is only ever set as textContent.

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "radtrack.token";
const FIELDS = `id sessionId userId nasName framedIpAddress startTime inputOctets outputOctets
  disconnecting`;
const EVENTS = `subscription Events($userId: Int) {
  sessionEvents(userId: $userId) { kind reason at session { ${FIELDS} } }
}`;
const STATS = "query Stats { stats { online byNas { nasName online } } }";
const TREND = `query Trend {
  sessionTrend { interval times online opened closed byNas { nasName online } other }
}`;
const SESSIONS = `query User($userId: Int!) {
  getOnlineSessions(userId: $userId) { ${FIELDS} }
  deviceLimit(userId: $userId) { online limit exceeded }
}`;
const DISCONNECT = `mutation Disconnect($id: ID!) {
  disconnectSession(id: $id) { sessionId nasName status errorCause attempts }
}`;

// -- a graphql-transport-ws client (github.com/enisdenjo/graphql-ws, PROTOCOL.md) ---------------
class LiveSocket {
  constructor(token, onStatus) {
    Object.assign(this, {token, onStatus, sinks: new Map(), nextId: 1, delay: 500});
    this.acked = this.closed = false;
    this.open();
  }
  open() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    this.ws = new WebSocket(scheme + location.host + "/graphql", "graphql-transport-ws");
    this.ws.onopen = () => this.send({type: "connection_init", payload: {token: this.token}});
    this.ws.onmessage = (event) => this.receive(JSON.parse(event.data));
    this.ws.onclose = (event) => this.lost(event);
  }
  send(message) {
    this.ws.send(JSON.stringify(message));
  }
  receive(message) {
    const sink = this.sinks.get(message.id);
    if (message.type === "connection_ack") {
      this.acked = true;
      this.delay = 500;
      this.onStatus("live");
      for (const [id, s] of this.sinks) this.start(id, s);
    } else if (message.type === "ping") {
      this.send({type: "pong"});
    } else if (sink && message.type === "next") {
      sink.next(message.payload);
    } else if (sink && (message.type === "error" || message.type === "complete")) {
      this.sinks.delete(message.id);
      if (message.type === "error") sink.error(message.payload);
      else sink.complete();
    }
  }
  start(id, s) {
    this.send({id, type: "subscribe", payload: {query: s.query, variables: s.variables}});
  }
  // sink: {next(payload), error(errors), complete()}; returns a function that unsubscribes
  subscribe(query, variables, sink) {
    const id = String(this.nextId++);
    const s = {query, variables, ...sink};
    this.sinks.set(id, s);
    if (this.acked) this.start(id, s);
    return () => {
      if (this.sinks.delete(id) && this.acked) this.send({id, type: "complete"});
    };
  }
  lost(event) {
    this.acked = false;
    if (this.closed) return;
    if (event.code === 4401) {  // the server refused the token: retrying would not help
      this.closed = true;
      this.onStatus("token refused");
      return;
    }
    this.onStatus("reconnecting");
    setTimeout(() => this.closed || this.open(), this.delay);
    this.delay = Math.min(this.delay * 2, 30000);
  }
  close() {
    this.closed = true;
    this.ws.close(1000);
  }
}

// -- the page ---------------------------------------------------------------------------------
let token = sessionStorage.getItem(TOKEN_KEY);
let live = null;
let userId = null;
let stopUser = null;
let feedForbidden = false;
let statsTimer = null;
let admin = null;  // null: not known yet; false: stats refused (a reseller's token)
let sessions = [];  // the searched user's online sessions, as last read
let confirming = null;  // the id of the session whose disconnect waits for a confirmation
const sending = new Set();  // ids of the sessions whose Disconnect-Request is under way

async function graphql(query, variables) {
  try {
    const response = await fetch("/graphql", {
      method: "POST",
      headers: {"Content-Type": "application/json", "Authorization": "Bearer " + token},
      body: JSON.stringify({query, variables}),
    });
    return await response.json();
  } catch (error) {
    return {errors: [{message: String(error)}]};
  }
}

const messages = (errors) => [...new Set((errors || []).map((e) => e.message))].join("; ");
const forbidden = (errors) => (errors || []).some((e) => (e.extensions || {}).code === "FORBIDDEN");
const clock = (iso) => (iso ? new Date(iso).toLocaleTimeString() : "");

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== null && text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function button(text, className, onClick) {
  const node = element("button", text, className);
  node.type = "button";
  node.addEventListener("click", onClick);
  return node;
}

function row(cells, numeric) {
  const tr = document.createElement("tr");
  cells.forEach((cell, i) => tr.append(element("td", cell, i === numeric ? "num" : "")));
  return tr;
}

function note(id, text, bad = false) {
  $(id).textContent = text;
  $(id).classList.toggle("bad", bad);
}

function size(octets) {
  const units = ["B", "kB", "MB", "GB", "TB", "PB"];
  let n = Number(octets);
  let i = 0;
  for (; n >= 1000 && i < units.length - 1; i++) n /= 1000;
  return (i ? n.toFixed(1) : String(n)) + " " + units[i];
}

const waiting = new Map();  // refreshes that events asked for, run once per ``delay`` at most
function soon(refresh, delay = 250) {
  if (!waiting.has(refresh)) {
    waiting.set(refresh, setTimeout(() => waiting.delete(refresh) && refresh(), delay));
  }
}

// -- what an admin token sees: totals and plots -----------------------------------------------
function setAdmin(value) {
  admin = value;
  for (const section of document.querySelectorAll(".admin")) section.hidden = !value;
  $("scope-note").hidden = value;
  $("scope-note").textContent = value ? "" : "This token sees its own users only: the totals "
    + "and plots count every reseller's sessions, so they are for admin tokens. Search your "
    + "users below.";
}

async function refreshStats() {
  if (admin === false) return;
  const body = await graphql(STATS);
  const stats = body.data && body.data.stats;
  if (!stats) {
    if (forbidden(body.errors)) return setAdmin(false);
    return note("stats-note", messages(body.errors), true);
  }
  if (admin === null) setAdmin(true);
  $("online").textContent = stats.online;
  $("nas").replaceChildren(...stats.byNas.map((nas) => row([nas.nasName, nas.online], 1)));
  note("stats-note", "");
}

async function refreshTrend() {
  if (admin === false) return;
  const body = await graphql(TREND);
  const trend = body.data && body.data.sessionTrend;
  if (!trend) {
    if (forbidden(body.errors)) return setAdmin(false);
    return note("trend-note", messages(body.errors), true);
  }
  drawTrend(trend);
  note("trend-note", `one sample every ${trend.interval} s; the last is now`);
}

// -- the searched user: sessions, device limit, disconnect, the filter -------------------------
const filterText = () => $("filter").value.trim().toLowerCase();

function matches(sessionId, address, text) {
  return !text || sessionId.toLowerCase().includes(text) || (address || "").includes(text);
}

async function refreshUser() {
  const asked = userId;
  if (asked === null) return;
  const body = await graphql(SESSIONS, {userId: asked});
  if (asked !== userId) return;
  const found = body.data && body.data.getOnlineSessions;
  if (!found) {
    sessions = [];
    renderSessions();
    return note("user-note", messages(body.errors), true);
  }
  sessions = found;
  renderSessions();
  const limit = body.data.deviceLimit;
  let devices = `${found.length} session(s) online`;
  if (limit) {
    devices = limit.limit
      ? `${limit.online} of ${limit.limit} devices online`
      : `${limit.online} device(s) online, no limit`;
    if (limit.exceeded) devices += ": over the limit";
  }
  note("user-note", `user ${asked}: ${devices}`, Boolean(limit && limit.exceeded));
}

function renderSessions() {
  const text = filterText();
  const shown = sessions.filter((s) => matches(s.sessionId, s.framedIpAddress, text));
  $("sessions").replaceChildren(...shown.map(sessionRow));
  if (text && sessions.length) $("sessions").append(filtered(shown.length, sessions.length));
}

function filtered(shown, all) {
  const tr = document.createElement("tr");
  const td = element("td", `${shown} of ${all} match the filter`, "note");
  td.colSpan = 6;
  tr.append(td);
  return tr;
}

function sessionRow(s) {
  const tr = row([
    s.sessionId, s.nasName, s.framedIpAddress, clock(s.startTime),
    size(s.inputOctets) + " / " + size(s.outputOctets),
  ], 4);
  tr.dataset.id = s.id;
  const cell = element("td", null, "act");
  if (sending.has(s.id)) {
    cell.append(element("span", "sending Disconnect-Request…", "pending"));
  } else if (s.disconnecting) {
    cell.append(element("span", "disconnecting: waiting for the NAS's Stop", "pending"));
  } else if (confirming === s.id) {
    cell.append(
      element("span", "End this session? "),
      button("Yes, disconnect", "danger confirm", () => disconnectSession(s)),
      button("Cancel", "cancel", () => {
        confirming = null;
        renderSessions();
      }),
    );
  } else {
    cell.append(button("Disconnect", "disconnect", () => {
      confirming = s.id;
      renderSessions();
    }));
  }
  tr.append(cell);
  return tr;
}

function outcome(result) {
  const tries = `${result.attempts} attempt${result.attempts === 1 ? "" : "s"}`;
  const what = {
    ACK: "the NAS ended the session (Disconnect-ACK)",
    NAK: `the NAS refused (Disconnect-NAK, ${result.errorCause || "no Error-Cause"})`,
    TIMEOUT: "no answer from the NAS",
  }[result.status];
  return `${result.sessionId} on ${result.nasName}: ${result.status}: ${what}, ${tries}`;
}

async function disconnectSession(s) {
  confirming = null;
  sending.add(s.id);
  renderSessions();
  note("disconnect-note", `${s.sessionId} on ${s.nasName}: sending a Disconnect-Request…`);
  const body = await graphql(DISCONNECT, {id: s.id});
  sending.delete(s.id);
  const result = body.data && body.data.disconnectSession;
  if (result) note("disconnect-note", outcome(result), result.status !== "ACK");
  else note("disconnect-note", `${s.sessionId}: ${messages(body.errors)}`, true);
  refreshUser();
}

// -- the live feed ----------------------------------------------------------------------------
function show(event) {
  const s = event.session;
  const item = element("li", null, event.kind.toLowerCase());
  const time = element("time", clock(event.at));
  time.dateTime = event.at;
  const reason = event.reason ? ` (${event.reason})` : "";
  const address = s.framedIpAddress ? `  ${s.framedIpAddress}` : "";
  const what = `user ${s.userId ?? "?"}  ${s.sessionId} on ${s.nasName}${reason}${address}`;
  item.append(time, element("b", event.kind), element("span", what));
  Object.assign(item.dataset, {session: s.sessionId, address: s.framedIpAddress || ""});
  item.hidden = !matches(s.sessionId, s.framedIpAddress, filterText());
  $("feed").prepend(item);
  while ($("feed").children.length > 200) $("feed").lastChild.remove();
}

function filterFeed() {
  const text = filterText();
  for (const item of $("feed").children) {
    item.hidden = !matches(item.dataset.session, item.dataset.address, text);
  }
}

function refreshAll() {
  refreshStats();
  refreshTrend();
  refreshUser();
}

function resume(follow) {  // the server ended a subscription ("too slow"): re-read, follow again
  const socket = live;
  setTimeout(() => {
    if (live !== socket) return;
    follow();
    refreshAll();
  }, 1000);
}

function followFeed() {
  live.subscribe(EVENTS, {userId: null}, {
    next(payload) {
      if (payload.errors) return note("feed-note", messages(payload.errors), true);
      const event = payload.data.sessionEvents;
      show(event);
      soon(refreshStats);
      soon(refreshTrend, 2000);
      if (event.session.userId === userId) soon(refreshUser);
    },
    error(errors) {  // not an admin token: the feed shows the searched user's events instead
      feedForbidden = true;
      note("feed-note", messages(errors) + ": the feed follows the user you search");
    },
    complete() {
      resume(followFeed);
    },
  });
}

function followUser() {
  if (stopUser) stopUser();
  stopUser = live.subscribe(EVENTS, {userId}, {
    next(payload) {
      if (payload.errors) return note("user-note", messages(payload.errors), true);
      if (feedForbidden) show(payload.data.sessionEvents);
      soon(refreshUser);
    },
    error(errors) {
      note("user-note", messages(errors), true);
    },
    complete() {
      resume(followUser);
    },
  });
}

function status(text) {
  if (text === "token refused") sessionStorage.removeItem(TOKEN_KEY);
  $("status").textContent = text;
  const kind = {"live": "live", "token refused": "bad"}[text] || "off";
  $("status").className = "status " + kind;
}

function leave() {
  if (live) live.close();
  live = stopUser = null;
  clearInterval(statsTimer);
  clearPlots();
  sessions = [];
  confirming = null;
  $("online").textContent = "–";
  for (const id of ["nas", "sessions", "feed"]) $(id).replaceChildren();
  for (const id of ["stats-note", "trend-note", "user-note", "feed-note", "disconnect-note"]) {
    note(id, "");
  }
  admin = null;
  for (const section of document.querySelectorAll(".admin")) section.hidden = false;
  $("scope-note").hidden = true;
}

function connect() {
  leave();
  status("connecting");
  $("forget").hidden = false;
  feedForbidden = false;
  live = new LiveSocket(token, status);
  followFeed();
  if (userId !== null) followUser();
  refreshAll();
  statsTimer = setInterval(() => {
    refreshStats();
    refreshTrend();
  }, 10000);
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const value = $("token").value.trim();
  if (!value) return;
  token = value;
  sessionStorage.setItem(TOKEN_KEY, token);
  $("token").value = "";
  connect();
});

$("forget").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  token = null;
  leave();
  $("forget").hidden = true;
  status("no token");
});

$("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const value = $("user-id").value.trim();
  if (!/^\d+$/.test(value)) return note("user-note", "A user id is a whole number", true);
  userId = Number(value);
  sessions = [];
  confirming = null;
  $("sessions").replaceChildren();
  note("disconnect-note", "");
  if (!live) return note("user-note", "Enter a token first", true);
  followUser();
  refreshUser();
});

$("filter").addEventListener("input", () => {
  renderSessions();
  filterFeed();
});

let resized = null;
window.addEventListener("resize", () => {
  clearTimeout(resized);
  resized = setTimeout(refreshTrend, 300);
});

if (token) connect();
