// The Conveyor web console: one page over the public HTTP API (docs/http.md), nothing else.
// Preact + htm, loaded as ES modules without a build step (vendor/README.md).
import { h, render } from "preact";
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import htm from "htm";

const html = htm.bind(h);
const KEY = "conveyor.apiKey";
const PAGE_SIZE = 25;
const STATES = ["PENDING", "SCHEDULED", "RUNNING", "RETRYING", "COMPLETED", "FAILED", "CANCELLED"];
const TERMINAL = new Set(["COMPLETED", "FAILED", "CANCELLED"]);
const RANK = { ROLE_READER: 1, ROLE_SUBMITTER: 2, ROLE_OPERATOR: 3, ROLE_ADMIN: 4 };
const HOUR = 3600 * 1000;

// ---------------------------------------------------------------- the API

const NAMESPACE = "conveyor.namespace";

function authHeaders() {
  const headers = {};
  const key = sessionStorage.getItem(KEY);
  if (key) headers.Authorization = "Bearer " + key;
  // Only an admin may ask for another namespace than its key's; the console offers it to them.
  const namespace = sessionStorage.getItem(NAMESPACE);
  if (namespace) headers["conveyor-namespace"] = namespace;
  return headers;
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(method, path, body) {
  const headers = authHeaders();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = {};
  try {
    data = text ? JSON.parse(text) : {};
  } catch {
    data = { message: text };
  }
  if (!response.ok) throw new ApiError(response.status, data.message || response.statusText);
  return data;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Server-Sent Events read with fetch, since EventSource cannot send the Authorization
// header. Reconnects after a drop, resuming with Last-Event-ID when events have ids;
// `onMissing` is called instead when the route answers 404 (a gateway without it).
// onEvent gets ("open"), ("ready") on the ": watching" comment, each event's name and
// JSON data, and ("end").
function openStream(path, onEvent, onMissing) {
  const controller = new AbortController();
  let stopped = false;
  let lastId = null;
  (async () => {
    while (!stopped) {
      try {
        const headers = { ...authHeaders(), Accept: "text/event-stream" };
        if (lastId !== null) headers["Last-Event-ID"] = lastId;
        const response = await fetch(path, { headers, signal: controller.signal });
        if (response.status === 404 && onMissing) {
          onMissing();
          return;
        }
        if (!response.ok) throw new ApiError(response.status, response.statusText);
        onEvent("open", null);
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value.replace(/\r\n?/g, "\n");
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            let name = "message";
            let id = null;
            const data = [];
            for (const line of block.split("\n")) {
              // ": watching" says the server now watches: a list read after it misses nothing.
              if (line.startsWith(":") && line.slice(1).trim() === "watching") onEvent("ready", null);
              if (!line || line.startsWith(":")) continue;
              const colon = line.indexOf(":");
              const field = colon < 0 ? line : line.slice(0, colon);
              let text = colon < 0 ? "" : line.slice(colon + 1);
              if (text.startsWith(" ")) text = text.slice(1);
              if (field === "data") data.push(text);
              else if (field === "event") name = text;
              else if (field === "id") id = text;
            }
            if (id !== null) lastId = id;
            if (name === "end") {
              stopped = true;
              onEvent("end", null);
              controller.abort();
              return;
            }
            if (data.length) onEvent(name, JSON.parse(data.join("\n")));
          }
        }
      } catch {
        if (controller.signal.aborted) return;
      }
      if (!stopped) await sleep(2000);
    }
  })();
  return () => {
    stopped = true;
    controller.abort();
  };
}

// Calls `fn` now and every `ms` while the component is shown.
function usePoll(fn, ms, deps) {
  useEffect(() => {
    let live = true;
    let timer = null;
    const tick = async () => {
      try {
        await fn();
      } finally {
        if (live) timer = setTimeout(tick, ms);
      }
    };
    tick();
    return () => {
      live = false;
      clearTimeout(timer);
    };
  }, deps);
}

// What `load` answers, read now, every `ms` while shown and again on `refresh()`:
// [the answer (null until the first), the last failure's message, refresh].
function usePolled(load, ms) {
  const [value, setValue] = useState(null);
  const [error, setError] = useState("");
  const [tick, setTick] = useState(0);
  usePoll(
    async () => {
      try {
        setValue(await load());
        setError("");
      } catch (e) {
        setError(e.message);
      }
    },
    ms,
    [tick],
  );
  return [value, error, () => setTick((n) => n + 1)];
}

// ---------------------------------------------------------------- formatting

const stateName = (state) => (state || "").replace("TASK_STATE_", "");
const short = (id) => (id && id.length > 14 ? id.slice(0, 8) + "…" + id.slice(-4) : id);
const firstLine = (text) => (text || "").split("\n")[0].slice(0, 200);

function when(timestamp) {
  if (!timestamp) return "";
  const date = new Date(timestamp);
  return date.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

function ago(timestamp) {
  if (!timestamp) return "";
  const seconds = Math.round((Date.now() - new Date(timestamp).getTime()) / 1000);
  if (seconds < 0) return "in " + duration(-seconds);
  return duration(seconds) + " ago";
}

function duration(seconds) {
  if (seconds < 60) return seconds + " s";
  if (seconds < 3600) return Math.round(seconds / 60) + " min";
  if (seconds < 86400) return (seconds / 3600).toFixed(1) + " h";
  return (seconds / 86400).toFixed(1) + " d";
}

function protoDuration(text) {
  if (!text) return "–";
  const seconds = parseFloat(text);
  return seconds < 1 ? Math.round(seconds * 1000) + " ms" : seconds.toFixed(2) + " s";
}

const percent = (x) => (x === undefined ? "–" : (100 * x).toFixed(1) + " %");

function labelParams(params, label) {
  for (const part of label.split(",")) {
    const [key, ...rest] = part.split("=");
    if (key.trim()) params.append(`labels[${key.trim()}]`, rest.join("=").trim());
  }
}

// ---------------------------------------------------------------- shared pieces

function StateBadge({ state }) {
  const name = stateName(state);
  return html`<span class=${"badge s-" + name.toLowerCase()}>${name}</span>`;
}

// A button that asks before it acts: the question replaces it until answered (Escape is
// "No", which gives the focus back to the button).
function ConfirmButton({ label, question, onConfirm, danger }) {
  const [asking, setAsking] = useState(false);
  const yes = useRef(null);
  const button = useRef(null);
  const back = useRef(false);
  useEffect(() => {
    if (asking && yes.current) yes.current.focus();
    if (!asking && back.current && button.current) button.current.focus();
    back.current = false;
  }, [asking]);
  const no = () => {
    back.current = true;
    setAsking(false);
  };
  if (!asking) {
    return html`<button ref=${button} class=${danger ? "danger" : ""} onClick=${() => setAsking(true)}>
      ${label}
    </button>`;
  }
  return html`<span class="confirm" role="alertdialog" aria-label=${question} onKeyDown=${(e) => e.key === "Escape" && no()}>
    <span>${question}</span>
    <button ref=${yes} class="danger" onClick=${() => (setAsking(false), onConfirm())}>
      Yes, ${label.toLowerCase()}
    </button>
    <button onClick=${no}>No</button>
  </span>`;
}

function Notice({ notice }) {
  return html`<p class=${"notice " + (notice && notice.error ? "error" : "")} role="status" aria-live="polite">
    ${notice ? notice.text : ""}
  </p>`;
}

// What an action says when it is done or refused, in a live region.
function useNotice() {
  const [notice, setNotice] = useState(null);
  const run = useCallback(async (what, action) => {
    try {
      await action();
      setNotice({ text: what });
    } catch (e) {
      setNotice({ text: e.message, error: true });
    }
  }, []);
  return [notice, run, setNotice];
}

function Heading({ children }) {
  const ref = useRef(null);
  useEffect(() => ref.current && ref.current.focus(), []);
  return html`<h1 tabindex="-1" ref=${ref}>${children}</h1>`;
}

// ---------------------------------------------------------------- charts (SVG)

function LineChart({ title, series, unit, from, note, summary }) {
  const width = 600;
  const height = 160;
  const now = Date.now();
  // Sampled lines start at the first sample (at most an hour ago), so a console just opened
  // shows lines; a series from the stats covers the hour it was asked for.
  const first = Math.min(now - 60000, ...series.flatMap((s) => s.points.map((p) => p[0])));
  const start = from || Math.max(now - HOUR, first);
  const span = now - start;
  const max = Math.max(1, ...series.flatMap((s) => s.points.map((p) => p[1])));
  const x = (t) => ((t - start) / span) * width;
  const y = (v) => height - (v / max) * (height - 10);
  const latest = series
    .map((s) => `${s.name} ${s.points.length ? +s.points[s.points.length - 1][1].toFixed(2) : 0}${unit || ""}`)
    .join(", ");
  return html`<figure class="chart">
    <figcaption>${title} <span class="muted">(top: ${+max.toFixed(2)}${unit || ""})</span>
      ${summary && html`<span class="summary">${summary}</span>`}</figcaption>
    <svg viewBox=${`0 0 ${width} ${height}`} role="img" aria-label=${`${title}; now ${latest}`} preserveAspectRatio="none">
      <line x1="0" y1=${height} x2=${width} y2=${height} class="axis" />
      ${series.map(
        (s) => html`<polyline class=${"line " + s.cls} points=${s.points.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ")} />`,
      )}
      ${series.map((s) => {
        // The latest point as a dot: a line of one point (one minute with finished tasks) shows nothing.
        const last = s.points[s.points.length - 1];
        return last && html`<circle class=${"dot " + s.cls} cx=${x(last[0]).toFixed(1)} cy=${y(last[1]).toFixed(1)} r="4" />`;
      })}
    </svg>
    <div class="legend">${series.map((s) => html`<span class=${"key " + s.cls}>${s.name}</span>`)}
      <span class="muted">since ${new Date(start).toLocaleTimeString()}${note || " (at most an hour), sampled every 5 s while open"}</span></div>
  </figure>`;
}

function StateBars({ types }) {
  const max = Math.max(1, ...types.map((t) => Number(t.total || 0)));
  return html`<figure class="chart">
    <figcaption>Tasks per type and state, last hour</figcaption>
    ${types.map((t) => {
      const label = (t.states || []).map((s) => `${stateName(s.state)} ${s.count}`).join(", ");
      return html`<div class="bar-row">
        <span class="bar-name">${t.type}</span>
        <span class="bar" role="img" aria-label=${`${t.type}: ${label}`}>
          ${(t.states || []).map(
            (s) => html`<span class=${"seg s-" + stateName(s.state).toLowerCase()}
              style=${{ width: `${(100 * Number(s.count)) / max}%` }} title=${`${stateName(s.state)} ${s.count}`}></span>`,
          )}
        </span>
        <span class="bar-total">${t.total || 0}</span>
      </div>`;
    })}
    <div class="legend">${STATES.map((s) => html`<span class=${"key s-" + s.toLowerCase()}>${s}</span>`)}</div>
  </figure>`;
}

// ---------------------------------------------------------------- pages

function stateTotals(stats) {
  const totals = {};
  for (const type of stats.types || []) {
    for (const s of type.states || []) totals[stateName(s.state)] = (totals[stateName(s.state)] || 0) + Number(s.count);
  }
  return totals;
}

function StateCounts({ totals, caption }) {
  return html`<ul class="counts" aria-label=${caption}>
    ${STATES.map(
      (s) => html`<li><a href=${"#/tasks?state=" + s} class=${"count s-" + s.toLowerCase()}>
        <span class="n">${totals[s] || 0}</span> <span>${s}</span></a></li>`,
    )}
  </ul>`;
}

const SAMPLES = "conveyor.samples";
const BUCKET_SECONDS = 60;

function Overview() {
  const [stats, setStats] = useState(null);
  const [samples, setSamples] = useState(() => JSON.parse(sessionStorage.getItem(SAMPLES) || "[]"));
  const [error, setError] = useState("");
  usePoll(
    async () => {
      try {
        const [s, q] = await Promise.all([api("GET", `/v1/tasks:stats?window=3600s&bucket=${BUCKET_SECONDS}s`), api("GET", "/v1/queues")]);
        setStats(s);
        setError("");
        const queues = q.queues || [];
        // Queue depth has no history in the API: it is sampled while the page is open.
        const sample = {
          t: Date.now(),
          depth: queues.reduce((n, x) => n + (x.waiting || []).reduce((a, b) => a + Number(b), 0), 0),
          running: queues.reduce((n, x) => n + Number(x.inFlight || 0), 0),
        };
        setSamples((old) => {
          const kept = [...old.filter((p) => p.t > sample.t - HOUR), sample];
          sessionStorage.setItem(SAMPLES, JSON.stringify(kept));
          return kept;
        });
      } catch (e) {
        setError(e.message);
      }
    },
    5000,
    [],
  );
  // Throughput and failure rate per bucket of the last hour, counted by the store.
  const buckets = (stats && stats.series) || [];
  const end = (b) => Date.parse(b.startTime) + BUCKET_SECONDS * 1000;
  const throughput = buckets.map((b) => [end(b), (Number(b.completed || 0) * 60) / BUCKET_SECONDS]);
  const failureRate = buckets
    .filter((b) => Number(b.completed || 0) + Number(b.failed || 0) > 0)
    .map((b) => [end(b), (100 * Number(b.failed || 0)) / (Number(b.completed || 0) + Number(b.failed || 0))]);
  const from = stats ? Date.parse(stats.since) : undefined;
  const sum = (name) => buckets.reduce((n, b) => n + Number(b[name] || 0), 0);
  const completed = sum("completed");
  const failed = sum("failed");
  const perMinute = ` (last hour, per ${BUCKET_SECONDS / 60} min, counted by the store)`;
  const totals = stats ? stateTotals(stats) : {};
  return html`<section>
    <${Heading}>Overview<//>
    ${error && html`<p class="notice error" role="alert">${error}</p>`}
    <h2>Tasks submitted in the last hour</h2>
    <${StateCounts} totals=${totals} caption="Tasks per state, last hour" />
    <div class="charts">
      <${LineChart} title="Queue depth and running tasks" series=${[
        { name: "waiting", cls: "c1", points: samples.map((p) => [p.t, p.depth]) },
        { name: "running", cls: "c2", points: samples.map((p) => [p.t, p.running]) },
      ]} />
      <${LineChart} title="Throughput (completed per minute)" from=${from} note=${perMinute}
        summary=${stats && `${completed} completed in the last hour`}
        series=${[{ name: "completed/min", cls: "c3", points: throughput }]} />
      <${LineChart} title="Failure rate (failed of finished)" unit=" %" from=${from} note=${perMinute}
        summary=${stats && `${failed} failed of ${completed + failed} finished in the last hour`}
        series=${[{ name: "failed", cls: "c4", points: failureRate }]} />
      ${stats && html`<${StateBars} types=${stats.types || []} />`}
    </div>
    <h2>Per type</h2>
    <div class="scroll"><table>
      <thead><tr><th scope="col">Type</th><th scope="col">Tasks</th><th scope="col">Success rate</th>
        <th scope="col">Retry rate</th><th scope="col">Run time p50 / p95</th><th scope="col">Queue wait p50</th>
        <th scope="col">Most frequent error</th></tr></thead>
      <tbody>${(stats ? stats.types || [] : []).map(
        (t) => html`<tr>
          <th scope="row"><a href=${"#/tasks?type=" + encodeURIComponent(t.type)}>${t.type}</a></th>
          <td>${t.total || 0}</td><td>${percent(t.successRate || 0)}</td><td>${percent(t.retryRate || 0)}</td>
          <td>${protoDuration(t.runTime && t.runTime.p50)} / ${protoDuration(t.runTime && t.runTime.p95)}</td>
          <td>${protoDuration(t.queueWait && t.queueWait.p50)}</td>
          <td>${t.topErrors && t.topErrors.length ? firstLine(t.topErrors[0].message) : ""}</td>
        </tr>`,
      )}</tbody>
    </table></div>
  </section>`;
}

function listParams(filters) {
  const params = new URLSearchParams();
  if (filters.state) params.append("states", "TASK_STATE_" + filters.state);
  if (filters.type) params.set("type", filters.type);
  if (filters.label) labelParams(params, filters.label);
  return params;
}

// The time filter is kept in the link as the form's local times ("2026-12-05T17:30").
function instant(local) {
  const t = local ? new Date(local).getTime() : NaN;
  return Number.isNaN(t) ? null : t;
}

function pageParams(filters) {
  const params = listParams(filters);
  const after = instant(filters.after);
  const before = instant(filters.before);
  if (after !== null) params.set("createdAfter", new Date(after).toISOString());
  if (before !== null) params.set("createdBefore", new Date(before).toISOString());
  return params;
}

function matches(task, filters) {
  if (filters.state && stateName(task.state) !== filters.state) return false;
  const created = Date.parse(task.createTime);
  const after = instant(filters.after);
  const before = instant(filters.before);
  if ((after !== null && created < after) || (before !== null && created >= before)) return false;
  if (filters.type && task.type !== filters.type) return false;
  if (filters.label) {
    for (const part of filters.label.split(",")) {
      const [key, ...rest] = part.split("=");
      if (key.trim() && (task.labels || {})[key.trim()] !== rest.join("=").trim()) return false;
    }
  }
  return true;
}

const FILTERS = ["state", "type", "label", "after", "before"];

let streamMissing = false; // learnt once per page load: this gateway has no tasks:watch

function TasksPage({ query }) {
  const filters = {};
  for (const name of FILTERS) filters[name] = query.get(name) || "";
  const key = JSON.stringify(filters);
  const [tokens, setTokens] = useState([""]);
  const [tasks, setTasks] = useState(null);
  const [next, setNext] = useState("");
  const [mode, setMode] = useState("connecting");
  const [error, setError] = useState("");
  const [totals, setTotals] = useState({});
  const token = tokens[tokens.length - 1];
  useEffect(() => setTokens([""]), [key]);

  useEffect(() => {
    let live = true;
    let timer = null;
    let stop = () => {};
    const load = async () => {
      const params = pageParams(filters);
      params.set("pageSize", PAGE_SIZE);
      if (token) params.set("pageToken", token);
      try {
        const answer = await api("GET", "/v1/tasks?" + params);
        if (!live) return;
        setTasks((rows) => merged(answer.tasks || [], rows));
        setNext(answer.nextPageToken || "");
        setError("");
      } catch (e) {
        if (live) setError(e.message);
      }
    };
    // A listing is a snapshot: changes the stream delivered while it was read are newer.
    const merged = (listed, rows) => {
      if (!rows) return listed;
      const known = new Map(rows.map((r) => [r.id, r]));
      const kept = listed.map((t) => {
        const row = known.get(t.id);
        return row && Number(row.version) > Number(t.version) ? row : t;
      });
      if (token) return kept;
      const ids = new Set(listed.map((t) => t.id));
      const newest = listed.length ? Date.parse(listed[0].createTime) : 0;
      const fresher = rows.filter((r) => !ids.has(r.id) && Date.parse(r.createTime) > newest && matches(r, filters));
      return [...fresher, ...kept].slice(0, PAGE_SIZE);
    };
    const poll = async () => {
      setMode("polling");
      await load();
      if (live) timer = setTimeout(poll, 2000);
    };
    const upsert = (task) =>
      setTasks((rows) => {
        if (!rows) return rows;
        const at = rows.findIndex((r) => r.id === task.id);
        if (at >= 0) {
          if (Number(rows[at].version) > Number(task.version)) return rows;
          if (!matches(task, filters)) return rows.filter((r) => r.id !== task.id);
          return rows.map((r, i) => (i === at ? task : r));
        }
        if (token || !matches(task, filters)) return rows;
        return [task, ...rows].slice(0, PAGE_SIZE);
      });
    load().then(() => {
      if (!live) return;
      if (streamMissing) return poll();
      // List again once the stream watches (and after each reconnect): together they miss
      // no change, whatever happened before or while reconnecting.
      stop = openStream(
        "/v1/tasks:watch?" + listParams(filters),
        (name, data) => {
          if (name === "open") setMode("live");
          else if (name === "ready") load();
          else if (data && data.task) upsert(data.task);
        },
        () => {
          streamMissing = true;
          if (live) poll();
        },
      );
    });
    return () => {
      live = false;
      clearTimeout(timer);
      stop();
    };
  }, [key, token]);

  usePoll(
    async () => {
      try {
        setTotals(stateTotals(await api("GET", "/v1/tasks:stats?window=86400s")));
      } catch {
        // The table shows the error; the counts keep their last value.
      }
    },
    5000,
    [],
  );

  const submit = (e) => {
    e.preventDefault();
    const form = new FormData(e.target);
    const params = new URLSearchParams();
    for (const name of FILTERS) if (form.get(name)) params.set(name, form.get(name).trim());
    location.hash = "#/tasks" + (params.toString() ? "?" + params : "");
  };
  const find = (e) => {
    e.preventDefault();
    const id = new FormData(e.target).get("id").trim();
    if (id) location.hash = "#/tasks/" + encodeURIComponent(id);
  };
  return html`<section>
    <${Heading}>Tasks<//>
    <${StateCounts} totals=${totals} caption="Tasks per state, last 24 hours" />
    <div class="forms">
      <form class="filters" onSubmit=${submit} aria-label="Filter tasks">
        <label>State <select name="state" value=${filters.state}>
          <option value="">any</option>${STATES.map((s) => html`<option value=${s}>${s}</option>`)}
        </select></label>
        <label>Type <input name="type" value=${filters.type} placeholder="text_processing" /></label>
        <label>Label <input name="label" value=${filters.label} placeholder="team=search" /></label>
        <label>Created after <input name="after" type="datetime-local" step="1" value=${filters.after} /></label>
        <label>Created before <input name="before" type="datetime-local" step="1" value=${filters.before} /></label>
        <button type="submit">Filter</button>
        ${FILTERS.some((name) => filters[name]) && html`<a href="#/tasks">Clear</a>`}
      </form>
      <form class="filters" onSubmit=${find} role="search" aria-label="Find a task by id">
        <label>Task id <input name="id" autocomplete="off" /></label>
        <button type="submit">Open</button>
      </form>
    </div>
    <p class="muted" id="live-mode">${mode === "live" ? "● Live: changes appear as they happen." : mode === "polling" ? "Refreshing every 2 s." : "Connecting…"}</p>
    ${error && html`<p class="notice error" role="alert">${error}</p>`}
    <div class="scroll"><table id="tasks">
      <caption class="sr-only">Tasks, newest first</caption>
      <thead><tr><th scope="col">Id</th><th scope="col">Type</th><th scope="col">State</th><th scope="col">Attempt</th>
        <th scope="col">Progress</th><th scope="col">Labels</th><th scope="col">Created</th><th scope="col">Updated</th></tr></thead>
      <tbody>${(tasks || []).map(
        (t) => html`<tr data-task=${t.id} data-state=${stateName(t.state)}>
          <th scope="row"><a href=${"#/tasks/" + t.id} class="mono">${short(t.id)}</a></th>
          <td>${t.type}</td><td><${StateBadge} state=${t.state} /></td>
          <td>${t.attempt || 0} / ${t.maxAttempts || 0}</td>
          <td>${t.progress && Number(t.progress.total) ? html`<progress max=${t.progress.total} value=${t.progress.current || 0} aria-label="progress">${t.progress.current}</progress>` : ""}</td>
          <td>${Object.entries(t.labels || {}).map(([k, v]) => html`<span class="label">${k}=${v}</span> `)}</td>
          <td title=${when(t.createTime)}>${ago(t.createTime)}</td><td title=${when(t.updateTime)}>${ago(t.updateTime)}</td>
        </tr>`,
      )}</tbody>
    </table></div>
    ${tasks && !tasks.length && html`<p>No tasks match.</p>`}
    <nav class="pager" aria-label="Pages">
      <button disabled=${tokens.length < 2} onClick=${() => setTokens(tokens.slice(0, -1))}>Previous page</button>
      <span>Page ${tokens.length}</span>
      <button disabled=${!next} onClick=${() => setTokens([...tokens, next])}>Next page</button>
    </nav>
  </section>`;
}

function TextStats({ result }) {
  const rows = [
    ["Characters", result.characters], ["Characters excluding spaces", result.charactersExcludingSpaces],
    ["Words", result.words], ["Unique words", result.uniqueWords], ["Sentences", result.sentences],
    ["Lines", result.lines], ["Paragraphs", result.paragraphs],
    ["Average word length", result.averageWordLength !== undefined ? result.averageWordLength.toFixed(2) : undefined],
  ];
  return html`<table class="stats"><tbody>
    ${rows.map(([name, value]) => html`<tr><th scope="row">${name}</th><td>${value || 0}</td></tr>`)}
  </tbody></table>
  ${result.topWords && html`<h3>Top words</h3><ol class="words">${result.topWords.map((w) => html`<li>${w.word} <span class="muted">${w.count}</span></li>`)}</ol>`}
  ${(result.transforms || []).map((t) => html`<h3>${t.transform || "Transform"}</h3><pre>${t.text || JSON.stringify(t, null, 2)}</pre>`)}`;
}

function Result({ task }) {
  const result = task.result;
  if (!result) return html`<p class="muted">No result${TERMINAL.has(stateName(task.state)) ? "" : " yet"}.</p>`;
  if (result.textProcessing) return html`<${TextStats} result=${result.textProcessing} />`;
  if (result.imageProcessing) {
    const image = result.imageProcessing;
    const format = (image.format || "IMAGE_FORMAT_PNG").replace("IMAGE_FORMAT_", "").toLowerCase();
    return html`<div>
      ${image.image
        ? html`<img class="result-image" src=${`data:image/${format};base64,${image.image}`} alt=${`Result image, ${image.width}×${image.height}`} />`
        : html`<p class="muted">The image is too large to show here.</p>`}
      <p>${image.width}×${image.height} ${format.toUpperCase()} ${image.mode || ""}, ${image.sizeBytes || 0} bytes
        (from ${image.originalWidth}×${image.originalHeight})</p></div>`;
  }
  return html`<pre>${JSON.stringify(result, null, 2)}</pre>`;
}

// The image type of base64 data, from its first bytes (the input does not say).
const IMAGE_MAGIC = { iVBOR: "png", "/9j/": "jpeg", R0lG: "gif", UklG: "webp", Qk: "bmp" };

// The image type of base64 `data` a browser can show, or null (not an image, or TIFF).
function imageType(data) {
  const found = Object.keys(IMAGE_MAGIC).find((magic) => data.startsWith(magic));
  return found ? IMAGE_MAGIC[found] : null;
}

function Input({ input }) {
  if (!input) return html`<p class="muted">Not known.</p>`;
  const left = input.payload
    ? html`<p class="muted">Part of the input is too large to show here (${input.payload.sizeBytes} bytes in all).</p>`
    : "";
  const rest = (object, ...shown) => {
    const others = Object.fromEntries(Object.entries(object).filter(([k]) => !shown.includes(k)));
    return Object.keys(others).length ? html`<pre class="input-options">${JSON.stringify(others, null, 2)}</pre>` : "";
  };
  let body;
  if (input.textProcessing || input.aiSummarization) {
    const text = input.textProcessing || input.aiSummarization;
    body = html`${text.text !== undefined && html`<pre class="input-text">${text.text}</pre>`}${rest(text, "text")}`;
  } else if (input.batchProcessing) {
    const batch = input.batchProcessing;
    const items = batch.items || [];
    body = html`${items.length ? html`<p>${items.length} items${items.length > 20 ? ", the first 20" : ""}:</p>
      <ol class="input-items">${items.slice(0, 20).map((item) => html`<li>${item}</li>`)}</ol>` : ""}${rest(batch, "items")}`;
  } else if (input.imageProcessing) {
    const image = input.imageProcessing;
    const type = image.image && imageType(image.image);
    const bytes = image.image ? Math.floor((image.image.length * 3) / 4) : 0;
    body = html`${image.image &&
      (type
        ? html`<img class="result-image" src=${`data:image/${type};base64,${image.image}`} alt="Input image" />`
        : html`<p class="muted input-bytes">${bytes.toLocaleString()} bytes that are not an image this browser can show.</p>`)}
      ${rest(image, "image")}`;
  } else if (input.custom) {
    let shown = input.custom.json;
    try {
      shown = JSON.stringify(JSON.parse(shown), null, 2);
    } catch {
      // Shown as sent.
    }
    body = html`<p>Custom type <strong>${input.custom.type}</strong></p>
      ${shown !== undefined ? html`<pre class="input-json">${shown}</pre>` : rest(input.custom, "type")}`;
  }
  return html`<div class="input">${body}${left}</div>`;
}

function TaskPage({ id, me }) {
  const [task, setTask] = useState(null);
  const [history, setHistory] = useState([]);
  const [error, setError] = useState("");
  const [notice, run] = useNotice();
  const [reload, setReload] = useState(0);

  // The FULL view adds the input (its large fields left out when it would not fit).
  const full = `/v1/tasks/${encodeURIComponent(id)}?view=TASK_VIEW_FULL`;

  useEffect(() => {
    let live = true;
    let stop = () => {};
    const remember = (t) =>
      setHistory((old) =>
        old.some((v) => v.version === t.version)
          ? old
          : [...old, { version: t.version, state: t.state, time: t.updateTime, attempt: t.attempt, progress: t.progress, error: t.error }].sort(
              (a, b) => Number(a.version) - Number(b.version),
            ),
      );
    (async () => {
      try {
        const found = (await api("GET", full)).task;
        if (!live) return;
        setTask(found);
        setError("");
        // The first version is the submit; the watch replays every later one from history.
        setHistory([{ version: "1", state: found.runAt && found.runAt > found.createTime ? "TASK_STATE_SCHEDULED" : "TASK_STATE_PENDING", time: found.createTime }]);
        stop = openStream(`/v1/tasks/${encodeURIComponent(id)}:watch?afterVersion=1&omitPayloads=true`, async (name, data) => {
          if (!data || !data.task) return;
          remember(data.task);
          const terminal = TERMINAL.has(stateName(data.task.state));
          // Terminal: read it again with its result's payloads, which the watch leaves out.
          const t = terminal ? (await api("GET", full)).task : { ...data.task, input: undefined };
          // The watch sends no input (it never changes): the first read's is kept.
          if (live) setTask((old) => (old && Number(old.version) > Number(t.version) ? old : { ...t, input: t.input || (old && old.input) }));
        });
      } catch (e) {
        if (live) setError(e.status === 404 ? `There is no task ${id}.` : e.message);
      }
    })();
    return () => {
      live = false;
      stop();
    };
  }, [id, reload]);

  if (error) return html`<section><${Heading}>Task<//><p class="notice error" role="alert">${error}</p><a href="#/tasks">All tasks</a></section>`;
  if (!task) return html`<section><${Heading}>Task<//><p>Loading…</p></section>`;
  const state = stateName(task.state);
  const canSubmit = RANK[me.role] >= 2;
  const path = "/v1/tasks/" + encodeURIComponent(task.id);
  const progress = task.progress && Number(task.progress.total) ? task.progress : null;
  const errors = task.attemptErrors && task.attemptErrors.length ? task.attemptErrors : task.error ? [task.error] : [];
  return html`<section>
    <${Heading}>Task <span class="mono">${task.id}</span><//>
    <p><${StateBadge} state=${task.state} /> ${task.type}, attempt ${task.attempt || 0} of ${task.maxAttempts || 0}
      ${task.cancelRequested && html` <strong>(cancel requested)</strong>`}</p>
    ${progress && html`<p><label>Progress ${progress.message ? "– " + progress.message : ""}
      <progress max=${progress.total} value=${progress.current || 0}>${progress.current} of ${progress.total}</progress></label>
      ${progress.current || 0} of ${progress.total}</p>`}
    ${canSubmit && html`<div class="actions">
      ${!TERMINAL.has(state) && html`<${ConfirmButton} label="Cancel" question="Cancel this task?" danger
        onConfirm=${() => run("Cancel requested.", () => api("POST", path + ":cancel", {}))} />`}
      ${(state === "FAILED" || state === "CANCELLED") && html`<${ConfirmButton} label="Retry" question="Run this task again?"
        onConfirm=${() => run("Retried.", async () => (await api("POST", path + ":retry", {}), setReload((n) => n + 1)))} />`}
      ${TERMINAL.has(state) && html`<${ConfirmButton} label="Delete" question="Delete this task and its history?" danger
        onConfirm=${() => run("Deleted.", async () => (await api("DELETE", path), (location.hash = "#/tasks")))} />`}
    </div>`}
    <${Notice} notice=${notice} />
    <div class="columns">
      <div>
        <h2>Details</h2>
        <dl class="details">
          <dt>Namespace</dt><dd>${task.namespace || "default"}</dd>
          <dt>Priority</dt><dd>${(task.priority || "").replace("TASK_PRIORITY_", "") || "–"}</dd>
          <dt>Created</dt><dd>${when(task.createTime)}</dd>
          ${task.runAt && html`<dt>Runs at</dt><dd>${when(task.runAt)} (${ago(task.runAt)})</dd>`}
          ${task.startTime && html`<dt>Started</dt><dd>${when(task.startTime)}</dd>`}
          ${task.endTime && html`<dt>Ended</dt><dd>${when(task.endTime)}</dd>`}
          ${task.nextAttemptTime && html`<dt>Next attempt</dt><dd>${when(task.nextAttemptTime)}</dd>`}
          <dt>Timeout</dt><dd>${task.timeout || "–"}</dd>
          ${task.workerId && html`<dt>Worker</dt><dd>${task.workerId}</dd>`}
          ${task.scheduleId && html`<dt>Schedule</dt><dd><a href="#/schedules">${task.scheduleId}</a></dd>`}
          ${task.idempotencyKey && html`<dt>Idempotency key</dt><dd>${task.idempotencyKey}</dd>`}
          <dt>Trace id</dt><dd class="mono" id="trace-id" title="Find it in your tracing back-end (Jaeger, Tempo…) or in the services' logs">${task.traceId || "–"}</dd>
          <dt>Labels</dt><dd>${Object.keys(task.labels || {}).length ? "" : "–"}${Object.entries(task.labels || {}).map(([k, v]) => html`<a class="label" href=${"#/tasks?label=" + encodeURIComponent(k + "=" + v)}>${k}=${v}</a> `)}</dd>
        </dl>
        <h2>Timeline</h2>
        <ol class="timeline" aria-label="Versions of the task">
          ${history.map(
            (v) => html`<li><span class="mono">v${v.version}</span> <${StateBadge} state=${v.state} />
              <time datetime=${v.time}>${when(v.time)}</time>
              ${v.attempt ? html` <span class="muted">attempt ${v.attempt}</span>` : ""}
              ${v.progress && Number(v.progress.total) ? html` <span class="muted">${v.progress.current || 0}/${v.progress.total} ${v.progress.message || ""}</span>` : ""}
              ${v.error && stateName(v.state) !== "COMPLETED" ? html` <span class="err">${firstLine(v.error.message)}</span>` : ""}</li>`,
          )}
        </ol>
      </div>
      <div>
        <h2>Input</h2>
        <${Input} input=${task.input} />
        <h2>Result</h2>
        <${Result} task=${task} />
        ${task.result && task.result.payload && html`<p class="muted">Stored payload: ${task.result.payload.name} (${task.result.payload.sizeBytes} bytes)</p>`}
        <h2>Attempts</h2>
        ${errors.length
          ? errors.map((e) => html`<details open=${errors.length === 1}><summary>Attempt ${e.attempt || "?"}: ${e.type} – ${firstLine(e.message)}</summary>
              <p class="muted">${when(e.time)}</p><pre>${e.message}</pre>
              ${e.traceback && html`<details class="traceback"><summary>Traceback</summary>
                <pre class="traceback" tabindex="0">${e.traceback}</pre></details>`}</details>`)
          : html`<p class="muted">No failed attempts.</p>`}
      </div>
    </div>
    <p><a href="#/tasks">All tasks</a></p>
  </section>`;
}

function FailuresPage({ me }) {
  const [tasks, error, refresh] = usePolled(
    async () => (await api("GET", "/v1/tasks?states=TASK_STATE_FAILED&pageSize=1000")).tasks || [],
    5000,
  );
  const [notice, run] = useNotice();
  const groups = new Map();
  for (const t of tasks || []) {
    const message = firstLine(t.error && t.error.message);
    const key = t.type + "\u0000" + message;
    if (!groups.has(key)) groups.set(key, { type: t.type, message, errorType: t.error && t.error.type, tasks: [] });
    groups.get(key).tasks.push(t);
  }
  const sorted = [...groups.values()].sort((a, b) => b.tasks.length - a.tasks.length);
  const retryAll = (group) =>
    run(`Retried ${group.tasks.length} task(s).`, async () => {
      const answers = await Promise.allSettled(group.tasks.map((t) => api("POST", `/v1/tasks/${encodeURIComponent(t.id)}:retry`, {})));
      refresh();
      const refused = answers.filter((a) => a.status === "rejected");
      if (refused.length) throw new Error(`${refused.length} of ${group.tasks.length} could not be retried: ${refused[0].reason.message}`);
    });
  return html`<section>
    <${Heading}>Failures<//>
    <p class="muted">Tasks that failed for good (the dead letters), grouped by type and error.</p>
    ${error && html`<p class="notice error" role="alert">${error}</p>`}
    <${Notice} notice=${notice} />
    ${tasks && !tasks.length && html`<p>No failed tasks.</p>`}
    ${sorted.map(
      (g) => html`<article class="group" key=${g.type + "\u0000" + g.message} data-type=${g.type}>
        <h2>${g.type}: <span class="err">${g.errorType ? g.errorType + ": " : ""}${g.message || "no message"}</span></h2>
        <p>${g.tasks.length} task(s)
          ${RANK[me.role] >= 2 && html` <${ConfirmButton} label=${"Retry all " + g.tasks.length} question=${`Retry all ${g.tasks.length} task(s) of this group?`} onConfirm=${() => retryAll(g)} />`}</p>
        <ul class="ids">${g.tasks.slice(0, 20).map((t) => html`<li><a class="mono" href=${"#/tasks/" + t.id}>${short(t.id)}</a> <span class="muted">${ago(t.endTime)}</span></li>`)}
          ${g.tasks.length > 20 && html`<li><a href=${"#/tasks?state=FAILED&type=" + encodeURIComponent(g.type)}>all ${g.tasks.length}…</a></li>`}</ul>
      </article>`,
    )}
  </section>`;
}

function LimitsForm({ queue, onSave }) {
  const limits = queue.limits || {};
  const id = "limits-" + queue.type;
  const save = (e) => {
    e.preventDefault();
    const form = new FormData(e.target);
    onSave({ maxConcurrency: Number(form.get("maxConcurrency") || 0), maxPerSecond: Number(form.get("maxPerSecond") || 0) });
  };
  return html`<form class="limits" onSubmit=${save} aria-label=${"Limits of " + queue.type}>
    <label for=${id + "-c"}>Max running</label>
    <input id=${id + "-c"} name="maxConcurrency" type="number" min="0" step="1" value=${limits.maxConcurrency || 0} />
    <label for=${id + "-r"}>Max per second</label>
    <input id=${id + "-r"} name="maxPerSecond" type="number" min="0" step="any" value=${limits.maxPerSecond || 0} />
    <button type="submit">Save limits</button>
  </form>`;
}

function QueuesPage({ me }) {
  const [read, error, refresh] = usePolled(async () => {
    const [q, s] = await Promise.all([api("GET", "/v1/queues"), api("GET", "/v1/tasks:stats?window=3600s")]);
    const done = {};
    for (const t of s.types || []) done[t.type] = Number((t.states || []).find((x) => stateName(x.state) === "COMPLETED")?.count || 0);
    return { queues: q.queues || [], done };
  }, 3000);
  const { queues, done } = read || { queues: null, done: {} };
  const [notice, run] = useNotice();
  const operate = RANK[me.role] >= 3;
  const act = (what, path, body) => run(what, async () => (await api("POST", path, body || {}), refresh()));
  return html`<section>
    <${Heading}>Queues<//>
    ${error && html`<p class="notice error" role="alert">${error}</p>`}
    <${Notice} notice=${notice} />
    <div class="scroll"><table id="queues">
      <thead><tr><th scope="col">Type</th><th scope="col">Waiting</th><th scope="col">Running</th>
        <th scope="col">Completed, last hour</th><th scope="col">Status</th><th scope="col">Limits</th></tr></thead>
      <tbody>${(queues || []).map((q) => {
        const waiting = (q.waiting || []).map(Number);
        const path = "/v1/queues/" + encodeURIComponent(q.type);
        return html`<tr data-queue=${q.type}>
          <th scope="row"><a href=${"#/tasks?type=" + encodeURIComponent(q.type)}>${q.type}</a><div class="muted">${q.description}</div></th>
          <td title="per priority, highest first">${waiting.reduce((a, b) => a + b, 0)}${waiting.length > 1 ? html` <span class="muted">(${waiting.join(" / ")})</span>` : ""}</td>
          <td>${q.inFlight || 0}</td>
          <td>${done[q.type] || 0} <span class="muted">(${((done[q.type] || 0) / 60).toFixed(1)}/min)</span></td>
          <td><span class=${q.paused ? "badge s-failed" : "badge s-completed"}>${q.paused ? "paused" : "running"}</span>
            ${operate && (q.paused
              ? html` <button onClick=${() => act(q.type + " resumed.", path + ":resume")}>Resume</button>`
              : html` <button onClick=${() => act(q.type + " paused.", path + ":pause")}>Pause</button>`)}</td>
          <td>${operate
            ? html`<${LimitsForm} queue=${q} onSave=${(limits) => act("Limits of " + q.type + " saved.", path + ":setLimits", { limits })} />`
            : `${(q.limits && q.limits.maxConcurrency) || "no"} max running, ${(q.limits && q.limits.maxPerSecond) || "no"} max per second`}</td>
        </tr>`;
      })}</tbody>
    </table></div>
  </section>`;
}

function ScheduleForm({ onCreate, onInvalid }) {
  const [kind, setKind] = useState("interval");
  const [taskType, setTaskType] = useState("text_processing");
  const submit = async (e) => {
    e.preventDefault();
    const form = new FormData(e.target);
    const spec = { description: form.get("description") };
    if (kind === "interval") spec.interval = form.get("timing").trim().replace(/^(\d+(\.\d+)?)$/, "$1s");
    else spec.cron = form.get("timing").trim();
    if (form.get("timeZone")) spec.timeZone = form.get("timeZone");
    if (taskType === "text_processing") spec.task = { textProcessing: { text: form.get("text") } };
    else {
      let payload;
      try {
        payload = JSON.parse(form.get("payload") || "{}");
      } catch (err) {
        onInvalid("The payload is not JSON: " + err.message);
        return;
      }
      spec.task = { custom: { type: form.get("customType").trim(), payload } };
    }
    if (await onCreate({ scheduleId: form.get("id").trim(), spec })) e.target.reset();
  };
  return html`<form class="create" onSubmit=${submit} aria-labelledby="new-schedule">
    <h2 id="new-schedule">New schedule</h2>
    <label>Id <input name="id" required pattern="[A-Za-z0-9_.\\-]+" placeholder="nightly-report" /></label>
    <fieldset><legend>Timing</legend>
      <label><input type="radio" name="kind" checked=${kind === "interval"} onChange=${() => setKind("interval")} /> Every (seconds or a duration like 90s)</label>
      <label><input type="radio" name="kind" checked=${kind === "cron"} onChange=${() => setKind("cron")} /> Cron</label>
      <label>${kind === "interval" ? "Interval" : "Cron expression"} <input name="timing" required placeholder=${kind === "interval" ? "60s" : "0 3 * * *"} /></label>
      ${kind === "cron" && html`<label>Time zone <input name="timeZone" placeholder="UTC" /></label>`}
    </fieldset>
    <fieldset><legend>Task</legend>
      <label>Type <select value=${taskType} onChange=${(e) => setTaskType(e.target.value)}>
        <option value="text_processing">text_processing</option><option value="custom">a custom type</option></select></label>
      ${taskType === "text_processing"
        ? html`<label>Text <textarea name="text" required rows="2"></textarea></label>`
        : html`<label>Custom type <input name="customType" required /></label>
               <label>Payload (JSON) <textarea name="payload" rows="3">{}</textarea></label>`}
    </fieldset>
    <label>Description <input name="description" /></label>
    <button type="submit">Create schedule</button>
  </form>`;
}

function SchedulesPage({ me }) {
  const [schedules, error, refresh] = usePolled(async () => (await api("GET", "/v1/schedules")).schedules || [], 5000);
  const [notice, run, setNotice] = useNotice();
  const operate = RANK[me.role] >= 3;
  const act = (what, method, path) => run(what, async () => (await api(method, path, method === "POST" ? {} : undefined), refresh()));
  const create = async (request) => {
    let ok = false;
    await run(`Schedule ${request.scheduleId} created.`, async () => {
      await api("POST", "/v1/schedules", request);
      ok = true;
      refresh();
    });
    return ok;
  };
  return html`<section>
    <${Heading}>Schedules<//>
    ${error && html`<p class="notice error" role="alert">${error}</p>`}
    <${Notice} notice=${notice} />
    ${schedules && !schedules.length && html`<p>No schedules.</p>`}
    ${schedules && schedules.length > 0 && html`<div class="scroll"><table id="schedules">
      <thead><tr><th scope="col">Id</th><th scope="col">Timing</th><th scope="col">Task</th><th scope="col">Next tick</th>
        <th scope="col">Last tick</th><th scope="col">Tasks made</th><th scope="col">Status</th>${operate && html`<th scope="col">Actions</th>`}</tr></thead>
      <tbody>${(schedules || []).map((s) => {
        const spec = s.spec || {};
        const task = spec.task || {};
        const type = task.custom ? task.custom.type : Object.keys(task).find((k) => k !== "options") || "";
        const path = "/v1/schedules/" + encodeURIComponent(s.id);
        return html`<tr data-schedule=${s.id}>
          <th scope="row">${s.id}<div class="muted">${spec.description}</div></th>
          <td>${spec.cron ? html`cron <code>${spec.cron}</code> ${spec.timeZone || ""}` : "every " + protoDuration(spec.interval)}</td>
          <td>${type.replace(/[A-Z]/g, (c) => "_" + c.toLowerCase())}</td>
          <td title=${when(s.nextTickTime)}>${s.paused ? "–" : ago(s.nextTickTime)}</td>
          <td>${s.lastTaskId ? html`<a href=${"#/tasks/" + s.lastTaskId}>${ago(s.lastTickTime)}</a>` : ago(s.lastTickTime)}</td>
          <td>${s.createdTasks || 0}${Number(s.skippedTicks) ? html` <span class="muted">(${s.skippedTicks} skipped)</span>` : ""}</td>
          <td>${s.paused ? "paused" : "active"}</td>
          ${operate && html`<td class="actions">
            ${s.paused
              ? html`<button onClick=${() => act(s.id + " resumed.", "POST", path + ":resume")}>Resume</button>`
              : html`<button onClick=${() => act(s.id + " paused.", "POST", path + ":pause")}>Pause</button>`}
            <button onClick=${() => act(s.id + " triggered.", "POST", path + ":trigger")}>Trigger now</button>
            <${ConfirmButton} label="Delete" danger question=${`Delete schedule ${s.id}?`} onConfirm=${() => act(s.id + " deleted.", "DELETE", path)} />
          </td>`}
        </tr>`;
      })}</tbody>
    </table></div>`}
    ${operate && html`<${ScheduleForm} onCreate=${create} onInvalid=${(text) => setNotice({ text, error: true })} />`}
  </section>`;
}

// ---------------------------------------------------------------- the frame

function KeyForm({ refused, onKey }) {
  const submit = (e) => {
    e.preventDefault();
    onKey(new FormData(e.target).get("key").trim());
  };
  return html`<main id="main"><section class="login">
    <${Heading}>Conveyor<//>
    <p>This gateway needs an API key. It is kept in this browser tab only (session storage) and sent with each call.</p>
    ${refused && html`<p class="notice error" role="alert">${refused}</p>`}
    <form onSubmit=${submit}>
      <label>API key <input name="key" type="password" autocomplete="off" required placeholder="cvk_…" /></label>
      <button type="submit">Sign in</button>
    </form>
  </section></main>`;
}

const PAGES = [
  ["#/", "Overview"],
  ["#/tasks", "Tasks"],
  ["#/failures", "Failures"],
  ["#/queues", "Queues"],
  ["#/schedules", "Schedules"],
];

function useHash() {
  const [hash, setHash] = useState(location.hash || "#/");
  useEffect(() => {
    const changed = () => setHash(location.hash || "#/");
    addEventListener("hashchange", changed);
    return () => removeEventListener("hashchange", changed);
  }, []);
  return hash;
}

function NamespaceForm({ me, onSwitch }) {
  const submit = (e) => {
    e.preventDefault();
    onSwitch(new FormData(e.target).get("namespace").trim());
  };
  return html`<form class="namespace" onSubmit=${submit} aria-label="Namespace">
    <label for="namespace" class="sr-only">Namespace</label>
    <input id="namespace" name="namespace" value=${me.namespace} size="10" />
    <button type="submit" class="link">Switch</button>
  </form>`;
}

function App() {
  const [me, setMe] = useState(undefined);
  const [refused, setRefused] = useState("");
  const hash = useHash();
  const [problem, setProblem] = useState("");
  const whoami = async () => {
    try {
      setMe(await api("GET", "/v1/whoami"));
    } catch (e) {
      if (e.status === 400 && sessionStorage.getItem(NAMESPACE)) {
        sessionStorage.removeItem(NAMESPACE);
        setProblem(e.message);
        return whoami();
      }
      if (e.status === 401 || e.status === 403) {
        setRefused(sessionStorage.getItem(KEY) ? "That key was refused: " + e.message : "");
        sessionStorage.removeItem(KEY);
        setMe(null);
      } else {
        setRefused("The gateway did not answer: " + e.message);
        setMe(null);
      }
    }
  };
  useEffect(() => void whoami(), []);
  if (me === undefined) return html`<p>Loading…</p>`;
  if (me === null)
    return html`<${KeyForm} refused=${refused} onKey=${(key) => (sessionStorage.setItem(KEY, key), whoami())} />`;

  const [path, search] = hash.split("?");
  const query = new URLSearchParams(search || "");
  let page;
  if (path.startsWith("#/tasks/")) page = html`<${TaskPage} id=${decodeURIComponent(path.slice(8))} me=${me} key=${path} />`;
  else if (path === "#/tasks") page = html`<${TasksPage} query=${query} me=${me} />`;
  else if (path === "#/failures") page = html`<${FailuresPage} me=${me} />`;
  else if (path === "#/queues") page = html`<${QueuesPage} me=${me} />`;
  else if (path === "#/schedules") page = html`<${SchedulesPage} me=${me} />`;
  else page = html`<${Overview} me=${me} />`;
  const current = path.startsWith("#/tasks/") ? "#/tasks" : path;
  const switchTo = (namespace) => {
    setProblem("");
    if (namespace && namespace !== "default") sessionStorage.setItem(NAMESPACE, namespace);
    else sessionStorage.removeItem(NAMESPACE);
    sessionStorage.removeItem(SAMPLES);
    whoami();
  };
  const signOut = () => {
    sessionStorage.removeItem(NAMESPACE);
    sessionStorage.removeItem(KEY);
    setRefused("");
    setMe(null);
  };
  return html`<a class="skip" href="#main" onClick=${(e) => (e.preventDefault(), document.getElementById("main").focus())}>Skip to content</a>
    <header>
      <span class="brand">Conveyor</span>
      <nav aria-label="Console"><ul>
        ${PAGES.map(([href, name]) => html`<li><a href=${href} aria-current=${current === href ? "page" : undefined}>${name}</a></li>`)}
      </ul></nav>
      <span class="who" id="who">${me.subject} · ${(me.role || "").replace("ROLE_", "").toLowerCase()} ·
        ${me.role === "ROLE_ADMIN" ? html`<${NamespaceForm} me=${me} onSwitch=${switchTo} />` : me.namespace}
        ${sessionStorage.getItem(KEY) && html` <button class="link" onClick=${signOut}>Sign out</button>`}</span>
    </header>
    <main id="main" tabindex="-1" key=${me.namespace}>
      ${problem && html`<p class="notice error" role="alert">${problem}</p>`}${page}</main>
    <footer><a href="/docs">HTTP API</a></footer>`;
}

render(html`<${App} />`, document.getElementById("app"));
