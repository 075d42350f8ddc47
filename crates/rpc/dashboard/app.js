// The pool dashboard: one WebSocket to the node that serves this page, a newHeads subscription, and on each new
// head (at most every REFRESH_MS) a refresh of the views from the metis_* API. Charts are uPlot's.
"use strict";

const REFRESH_MS = 400;
const EPOCHS_SHOWN = 20;
const BATCHES_SHOWN = 12;

const $ = (id) => document.getElementById(id);

// JSON-RPC over one WebSocket, reconnecting with backoff.
class Rpc {
  constructor(url, onHead, onState) {
    this.url = url;
    this.onHead = onHead;
    this.onState = onState;
    this.next = 1;
    this.waiting = new Map();
    this.backoff = 500;
    this.connect();
  }
  connect() {
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.onopen = async () => {
      this.backoff = 500;
      this.onState("live");
      try {
        await this.call("eth_subscribe", ["newHeads"]);
      } catch (e) {
        console.error("subscribe", e);
      }
      this.onHead(null);
    };
    ws.onmessage = (m) => {
      const msg = JSON.parse(m.data);
      if (msg.method === "eth_subscription") {
        this.onHead(msg.params.result);
        return;
      }
      const w = this.waiting.get(msg.id);
      if (!w) return;
      this.waiting.delete(msg.id);
      if (msg.error) w.reject(new Error(msg.error.message));
      else w.resolve(msg.result);
    };
    ws.onclose = () => {
      for (const w of this.waiting.values()) w.reject(new Error("connection closed"));
      this.waiting.clear();
      this.onState("reconnecting");
      setTimeout(() => this.connect(), this.backoff);
      this.backoff = Math.min(this.backoff * 2, 5000);
    };
  }
  call(method, params = []) {
    return new Promise((resolve, reject) => {
      if (this.ws.readyState !== WebSocket.OPEN) {
        reject(new Error("not connected"));
        return;
      }
      const id = this.next++;
      this.waiting.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ jsonrpc: "2.0", id, method, params }));
    });
  }
}

// Rendering helpers: text only (textContent), never markup from the node.
function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "–" : String(text);
  if (cls) td.className = cls;
  return td;
}
function linkCell(text, href) {
  const td = document.createElement("td");
  td.className = "mono";
  if (href) {
    const a = document.createElement("a");
    a.href = href;
    a.target = "_blank";
    a.rel = "noopener";
    a.textContent = text;
    td.appendChild(a);
  } else {
    td.textContent = text || "–";
  }
  return td;
}
function fillTable(id, rows) {
  const body = $(id).querySelector("tbody");
  body.replaceChildren(...rows);
}
function row(cells, data = {}) {
  const tr = document.createElement("tr");
  for (const [k, v] of Object.entries(data)) tr.dataset[k] = v;
  tr.append(...cells);
  return tr;
}
const num = (v) => (typeof v === "string" && v.startsWith("0x") ? Number(BigInt(v)) : Number(v));
// Wei (decimal or 0x) to whole tokens with up to 4 decimals.
function tokens(wei) {
  if (wei === null || wei === undefined) return "–";
  const w = BigInt(wei);
  const unit = 10n ** 18n;
  const whole = w / unit;
  const frac = ((w % unit) * 10000n) / unit;
  const f = frac === 0n ? "" : "." + frac.toString().padStart(4, "0").replace(/0+$/, "");
  return whole.toLocaleString("en-US") + f;
}
// An enum as serde writes it: "Name" or { Name: {...} }.
const label = (v) => (typeof v === "string" ? v : v && typeof v === "object" ? Object.keys(v)[0] : String(v));
// Stake amounts in tokens, other big numbers in decimal.
function paramValue(name, v) {
  if (typeof v === "string" && v.startsWith("0x")) return /stake|unit/.test(name) ? tokens(v) + " tokens" : BigInt(v).toString();
  return typeof v === "object" ? JSON.stringify(v) : v;
}
const short = (h) => (h && h.length > 14 ? h.slice(0, 8) + "…" + h.slice(-6) : h);

function reasonOf(r) {
  if (typeof r === "string") return { kind: r.toLowerCase(), text: r };
  if (r && r.ReElection) return { kind: "re-election", text: `re-election (sequencer ${r.ReElection.failed} missed ${r.ReElection.misses})` };
  if (r && r.Jailed) return { kind: "jailed", text: `jailed producer ${r.Jailed.producer}` };
  return { kind: "other", text: JSON.stringify(r) };
}

function chart(el, label, color) {
  const opts = {
    width: el.clientWidth - 12,
    height: 200,
    scales: { x: { time: false } },
    axes: [{ stroke: "#8a96a3", grid: { stroke: "#222c36" } }, { stroke: "#8a96a3", grid: { stroke: "#222c36" } }],
    series: [{ label: "height" }, { label, stroke: color, width: 1.5, points: { show: false } }],
  };
  return new uPlot(opts, [[], []], el);
}

const state = { charts: null, busy: false, again: false, last: 0 };

function charts() {
  if (!state.charts) {
    state.charts = {
      interval: chart($("chart-interval"), "interval ms", "#58a6ff"),
      decision: chart($("chart-decision"), "decision ms", "#3fb950"),
    };
  }
  return state.charts;
}

async function refresh(rpc) {
  const [ledger, validators, epoch, signer, poster, key, evidence, pace, l1, head] = await Promise.all([
    rpc.call("metis_ledger"),
    rpc.call("metis_validators"),
    rpc.call("metis_currentEpoch"),
    rpc.call("metis_signer"),
    rpc.call("metis_poster"),
    rpc.call("metis_thresholdKey"),
    rpc.call("metis_evidence", [0, 100]),
    rpc.call("metis_pace"),
    rpc.call("metis_l1Status"),
    rpc.call("eth_blockNumber"),
  ]);
  const epochsTotal = num(ledger.epochs);
  const epochs = await rpc.call("metis_epochs", [Math.max(0, epochsTotal - EPOCHS_SHOWN), EPOCHS_SHOWN]);
  const nextBatch = num(signer.batches.next_index);
  const firstBatch = Math.max(0, nextBatch - BATCHES_SHOWN);
  const batches = await Promise.all(
    Array.from({ length: nextBatch - firstBatch }, (_, i) => rpc.call("metis_getBatchByIndex", [nextBatch - 1 - i])),
  );
  const l1Total = num(ledger.l1_events);
  const l1Events = await rpc.call("metis_l1Events", [Math.max(0, l1Total - 1000), 1000]);
  const byId = new Map(validators.map((v) => [v.id, v]));
  const who = (id) => (byId.has(id) ? `${id} (${short(byId.get(id).signer)})` : String(id));

  $("height").textContent = num(head);
  $("epoch").textContent = epoch.id;
  $("producer").textContent = who(epoch.producer);
  $("round").textContent = pace.length ? pace[pace.length - 1].round : "–";
  $("key-epoch").textContent = key.current ? key.current.round : "none";
  $("l1-batches").textContent = poster.l1_confirmed_index ?? "–";
  $("l1-head").textContent = `${l1.head ?? "–"} / ${l1.synced_to ?? "–"}`;

  const window = num(ledger.params.downtime_window) || 0;
  const height = num(ledger.height);
  fillTable(
    "validators",
    validators.map((v) => {
      const jailed = v.l1_jailed || v.jailed_until_epoch > epoch.id;
      const span = Math.min(window, height);
      const uptime = span > 0 ? (100 * (1 - v.missed_in_window / span)).toFixed(1) + "%" : "–";
      return row(
        [
          cell(v.id),
          cell(v.signer, "mono"),
          cell(tokens(v.stake)),
          cell(v.voting_power),
          cell(v.status),
          cell(jailed ? `until epoch ${v.jailed_until_epoch}` : "no"),
          cell(v.produced_this_epoch),
          cell(v.missed_in_window),
          cell(uptime),
        ],
        { signer: v.signer.toLowerCase(), stake: BigInt(v.stake).toString(), jailed: jailed ? "yes" : "no" },
      );
    }),
  );

  fillTable(
    "rotations",
    epochs
      .slice()
      .reverse()
      .map((e) => {
        const r = reasonOf(e.reason);
        return row(
          [cell(e.id), cell(`${e.first_block}–${e.last_block}${e.ended ? "" : " (running)"}`), cell(who(e.producer)), cell(r.text), cell(e.missed)],
          { reason: r.kind, epoch: e.id },
        );
      }),
  );

  const landed = new Map((poster.landed || []).map((l) => [num(l.index), l]));
  const explorer = l1.explorer ? l1.explorer.replace(/\/$/, "") : null;
  fillTable(
    "batches",
    batches
      .filter((b) => b)
      .map((b) => {
        const i = num(b.index);
        let status = "cut";
        if (b.signature) status = "signed";
        if (poster.l1_next_index !== null && i < num(poster.l1_next_index)) status = "posted";
        if (poster.l1_confirmed_index !== null && i < num(poster.l1_confirmed_index)) status = "confirmed";
        const l = landed.get(i);
        const tx = l && l.l1_tx ? l.l1_tx : null;
        return row(
          [
            cell(i),
            cell(`${num(b.l2FirstBlock)}–${num(b.l2LastBlock)}`),
            cell(status, "status"),
            // Empty: this node received the signature whole from the one that aggregated it.
            cell(b.signedByShares && b.signedByShares.length ? "shares " + b.signedByShares.join(", ") : b.signature ? "(aggregated by a peer)" : null),
            cell(b.signatureLatencyMs !== null && b.signatureLatencyMs !== undefined ? b.signatureLatencyMs + " ms" : null),
            linkCell(tx ? `${short(tx)} (L1 block ${l.l1_block})` : null, tx && explorer ? `${explorer}/tx/${tx}` : null),
          ],
          { index: i, status },
        );
      }),
  );

  const k = key.current;
  $("key").textContent = k
    ? `key epoch ${k.round}: ${k.quorum} of ${k.members.length} members (${k.members.join(", ")}), signs from height ${k.since}, MPC address ${k.mpc_address}` +
      (key.running ? `; round ${key.running.round} (${label(key.running.kind)}) running` : "")
    : "no key yet" + (key.running ? ` (round ${key.running.round} running)` : "");
  fillTable(
    "key-rounds",
    key.history
      .slice(-10)
      .reverse()
      .map((h) => row([cell(h.round.round), cell(label(h.round.kind)), cell(label(h.outcome)), cell(h.height)])),
  );

  fillTable(
    "params",
    Object.entries(ledger.params).map(([name, value]) => row([cell(name), cell(paramValue(name, value), "mono")])),
  );
  fillTable(
    "param-changes",
    l1Events
      .filter((e) => e.event === "ParameterChanged")
      .reverse()
      .map((e) => {
        const d = e.data.ParameterChanged || e.data;
        return row([cell(d.name), cell(String(num(d.value))), cell(e.l1_block), cell(e.l2_block)]);
      }),
  );

  fillTable(
    "evidence",
    evidence
      .slice()
      .reverse()
      .map((o) =>
        row([
          cell(who(o.sequencer)),
          cell(typeof o.kind === "string" ? o.kind : JSON.stringify(o.kind)),
          cell(o.offence_height),
          cell(o.included),
          cell(o.slash ? JSON.stringify(o.slash) : "none"),
          cell(o.l1_slash ? `slashed ${tokens(o.l1_slash.amount)} (L1 block ${o.l1_slash.l1_block})` : o.slash_open ? "open" : "–"),
          cell(o.jail ? JSON.stringify(o.jail) : "–"),
        ]),
      ),
  );

  const c = charts();
  const xs = pace.map((p) => p.height);
  c.interval.setData([xs, pace.map((p) => p.interval_ms)]);
  c.decision.setData([xs, pace.map((p) => p.decision_ms)]);
  $("updated").textContent = new Date().toLocaleTimeString();
  document.body.dataset.loaded = "yes";
}

// At most one refresh in flight; heads that arrive meanwhile ask for one more.
async function onHead(rpc) {
  if (state.busy) {
    state.again = true;
    return;
  }
  const wait = state.last + REFRESH_MS - Date.now();
  if (wait > 0) {
    state.busy = true;
    await new Promise((r) => setTimeout(r, wait));
  }
  state.busy = true;
  try {
    await refresh(rpc);
  } catch (e) {
    console.error("refresh", e);
  } finally {
    state.busy = false;
    state.last = Date.now();
  }
  if (state.again) {
    state.again = false;
    onHead(rpc);
  }
}

const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/";
const rpc = new Rpc(
  url,
  () => onHead(rpc),
  (s) => {
    $("conn").textContent = s;
    $("conn").dataset.state = s;
  },
);
