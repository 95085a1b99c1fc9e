// The live status page: one WebSocket to /ws/alarm/, re-rendered from each message.
// On every (re)connect the server sends fresh alarm_state and system_status snapshots, so
// the page starts over from them; a lost socket is retried with a jittered backoff
// (0.5 s doubling to 30 s). A ping every 25 s without a pong within 10 s counts as lost.
// Jobs and runs come as task_runs pushes (one per burst of changes, nothing while none
// happens) and are read once from summary.json after each (re)connect, once the snapshots
// show the socket receives pushes; the larger sequence number of the two wins.
(function () {
  "use strict";
  const app = document.getElementById("status-app");
  const wsPath = app.dataset.wsPath;
  const summaryUrl = app.dataset.summaryUrl;
  const loginUrl = app.dataset.loginUrl;
  const LABELS = {
    online: { link: "connected", availability: "available" },
    offline: { link: "disconnected", availability: "unavailable" },
  };
  const AVAILABILITY = new Set(["frigate"]);
  let backoff = 500;
  let latest = {};
  let pingTimer = null;
  let pongTimer = null;
  let summaryWanted = false; // read summary.json at this socket's first system_status
  let opened = 0; // sockets opened so far, shown as data-connects (tests wait on it)

  function text(el, value) {
    el.textContent = value === null || value === undefined || value === "" ? "–" : String(value);
  }

  function when(iso) {
    return iso ? new Date(iso).toLocaleString() : "–";
  }

  function setConnection(state, label) {
    const badge = document.getElementById("connection");
    badge.dataset.state = state;
    badge.textContent = label;
  }

  function stateLabel(name, state) {
    const kind = AVAILABILITY.has(name) ? "availability" : "link";
    if (LABELS[state]) return LABELS[state][kind];
    return { unconfigured: "not configured", auth_failed: "authentication failed" }[state] || state;
  }

  function renderStatus(payload) {
    for (const [name, status] of Object.entries(payload)) {
      const row = document.querySelector(`tr[data-integration="${name}"]`);
      if (!row) continue;
      const badge = row.querySelector('[data-field="state"]');
      badge.dataset.state = status.state;
      badge.textContent = stateLabel(name, status.state);
      text(row.querySelector('[data-field="since"]'), when(status.since));
      text(row.querySelector('[data-field="last_connect_at"]'), when(status.last_connect_at));
      text(row.querySelector('[data-field="last_disconnect_at"]'), when(status.last_disconnect_at));
      text(row.querySelector('[data-field="last_error"]'), status.last_error);
      const details = Object.entries(status.details || {}).map(([k, v]) => `${k}: ${v}`);
      text(row.querySelector('[data-field="details"]'), details.join(", "));
    }
  }

  function renderAlarm(payload) {
    const state = document.getElementById("alarm-state");
    const delay = document.getElementById("alarm-delay");
    if (!payload) {
      state.dataset.state = "unknown";
      text(state, "unknown");
      delay.textContent = "";
      return;
    }
    state.dataset.state = payload.state || "";
    text(state, payload.state);
    text(document.getElementById("alarm-previous"), payload.previous_state);
    text(document.getElementById("alarm-changed"), when(payload.changed_at));
    delay.textContent = payload.delay
      ? `(${payload.delay.kind} delay until ${when(payload.delay.until)})`
      : "";
  }

  function renderEntity(entity) {
    const list = document.getElementById("entities");
    const muted = list.querySelector(".muted");
    if (muted) muted.remove();
    const item = document.createElement("li");
    item.textContent = `${entity.name || entity.entity_id}: ${entity.state} (${entity.source})`;
    list.prepend(item);
    while (list.children.length > 20) list.lastElementChild.remove();
  }

  function fillTable(id, rows, cells, empty) {
    const body = document.querySelector(`#${id} tbody`);
    body.replaceChildren();
    if (!rows.length) {
      const tr = body.insertRow();
      const td = tr.insertCell();
      td.colSpan = cells.length;
      td.className = "muted";
      td.textContent = empty;
      return;
    }
    for (const row of rows) {
      const tr = body.insertRow();
      for (const cell of cells) text(tr.insertCell(), cell(row));
    }
  }

  function renderRuns(data) {
    fillTable("jobs", data.jobs, [
      (j) => j.name, (j) => j.schedule, (j) => (j.paused ? "paused" : when(j.next_run_at)),
    ], "no jobs");
    fillTable("runs", data.runs, [
      (r) => r.task, (r) => r.status, (r) => r.source, (r) => when(r.started_at),
      (r) => (r.duration === null ? null : `${r.duration.toFixed(2)} s`), (r) => r.error,
    ], "no runs yet");
  }

  async function readSummary() {
    try {
      const response = await fetch(summaryUrl, { credentials: "same-origin" });
      if (!response.ok) return;
      handle(await response.json()); // a task_runs message, numbered like the pushes
    } catch (err) {
      // The next (re)connect reads it again; pushes keep coming meanwhile.
    }
  }

  function handle(message) {
    const kind = message.type;
    if (kind === "pong") {
      clearTimeout(pongTimer);
      return;
    }
    if (kind === "alarm_state" || kind === "system_status" || kind === "task_runs") {
      if (kind === "system_status" && summaryWanted) {
        summaryWanted = false; // the snapshots came: this socket now receives every push
        readSummary();
      }
      if (kind in latest && message.sequence <= latest[kind]) return; // older than shown
      latest[kind] = message.sequence;
      if (kind === "alarm_state") renderAlarm(message.payload);
      else if (kind === "system_status") renderStatus(message.payload);
      else renderRuns(message.payload);
    } else if (kind === "entity_state") {
      renderEntity(message.payload);
    }
  }

  function stopTimers() {
    clearInterval(pingTimer);
    clearTimeout(pongTimer);
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + location.host + wsPath);
    socket.onopen = () => {
      backoff = 500;
      latest = {}; // the snapshots that follow replace everything shown
      opened += 1;
      document.getElementById("connection").dataset.connects = String(opened);
      setConnection("live", "live");
      summaryWanted = true;
      pingTimer = setInterval(() => {
        socket.send(JSON.stringify({ type: "ping" }));
        pongTimer = setTimeout(() => socket.close(), 10000);
      }, 25000);
    };
    socket.onmessage = (event) => handle(JSON.parse(event.data));
    socket.onclose = (event) => {
      stopTimers();
      if (event.code === 4401) {
        setConnection("signed-out", "signed out");
        location.href = `${loginUrl}?next=${encodeURIComponent(location.pathname)}`;
        return;
      }
      const delay = backoff / 2 + Math.random() * backoff / 2;
      backoff = Math.min(backoff * 2, 30000);
      setConnection("reconnecting", `reconnecting in ${(delay / 1000).toFixed(1)} s`);
      setTimeout(connect, delay);
    };
  }

  connect();
})();
