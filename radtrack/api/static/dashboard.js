"use strict";
// The radtrack dashboard. Reads go to POST /graphql; the live feed comes over the WebSocket at
// /graphql (graphql-transport-ws). The token lives in this tab's sessionStorage only. Data from
// the server is only ever set as textContent.

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "radtrack.token";
const FIELDS = "id sessionId userId nasName framedIpAddress startTime inputOctets outputOctets";
const EVENTS = `subscription Events($userId: Int) {
  sessionEvents(userId: $userId) { kind reason at session { ${FIELDS} } }
}`;
const STATS = "query Stats { stats { online byNas { nasName online } } }";
const SESSIONS = `query User($userId: Int!) { getOnlineSessions(userId: $userId) { ${FIELDS} } }`;

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

const messages = (errors) => (errors || []).map((error) => error.message).join("; ");
const clock = (iso) => (iso ? new Date(iso).toLocaleTimeString() : "");

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== null && text !== undefined) node.textContent = text;
  if (className) node.className = className;
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

const waiting = new Map();  // refreshes that events asked for, run once per 250 ms at most
function soon(refresh) {
  if (!waiting.has(refresh)) {
    waiting.set(refresh, setTimeout(() => waiting.delete(refresh) && refresh(), 250));
  }
}

async function refreshStats() {
  const body = await graphql(STATS);
  const stats = body.data && body.data.stats;
  if (!stats) return note("stats-note", messages(body.errors), true);
  $("online").textContent = stats.online;
  $("nas").replaceChildren(...stats.byNas.map((nas) => row([nas.nasName, nas.online], 1)));
  note("stats-note", "");
}

async function refreshUser() {
  const asked = userId;
  if (asked === null) return;
  const body = await graphql(SESSIONS, {userId: asked});
  if (asked !== userId) return;
  const sessions = body.data && body.data.getOnlineSessions;
  if (!sessions) return note("user-note", messages(body.errors), true);
  note("user-note", `user ${asked}: ${sessions.length} session(s) online`);
  $("sessions").replaceChildren(...sessions.map((s) => row([
    s.sessionId, s.nasName, s.framedIpAddress, clock(s.startTime),
    size(s.inputOctets) + " / " + size(s.outputOctets),
  ], 4)));
}

function show(event) {
  const s = event.session;
  const item = element("li", null, event.kind.toLowerCase());
  const time = element("time", clock(event.at));
  time.dateTime = event.at;
  const reason = event.reason ? ` (${event.reason})` : "";
  const what = `user ${s.userId ?? "?"}  ${s.sessionId} on ${s.nasName}${reason}`;
  item.append(time, element("b", event.kind), element("span", what));
  $("feed").prepend(item);
  while ($("feed").children.length > 200) $("feed").lastChild.remove();
}

function resume(follow) {  // the server ended a subscription ("too slow"): re-read, follow again
  const socket = live;
  setTimeout(() => {
    if (live !== socket) return;
    follow();
    refreshStats();
    refreshUser();
  }, 1000);
}

function followFeed() {
  live.subscribe(EVENTS, {userId: null}, {
    next(payload) {
      if (payload.errors) return note("feed-note", messages(payload.errors), true);
      const event = payload.data.sessionEvents;
      show(event);
      soon(refreshStats);
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

function disconnect() {
  if (live) live.close();
  live = stopUser = null;
  clearInterval(statsTimer);
  $("online").textContent = "–";
  for (const id of ["nas", "sessions", "feed"]) $(id).replaceChildren();
  for (const id of ["stats-note", "user-note", "feed-note"]) note(id, "");
}

function connect() {
  disconnect();
  status("connecting");
  $("forget").hidden = false;
  feedForbidden = false;
  live = new LiveSocket(token, status);
  followFeed();
  if (userId !== null) followUser();
  refreshStats();
  refreshUser();
  statsTimer = setInterval(refreshStats, 10000);
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
  disconnect();
  $("forget").hidden = true;
  status("no token");
});

$("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const value = $("user-id").value.trim();
  if (!/^\d+$/.test(value)) return note("user-note", "A user id is a whole number", true);
  userId = Number(value);
  $("sessions").replaceChildren();
  if (!live) return note("user-note", "Enter a token first", true);
  followUser();
  refreshUser();
});

if (token) connect();
