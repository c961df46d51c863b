/**
 * The webhook receiver: a separate Node process (node:http, keep-alive) started by the
 * driver with IPC. Every request is verified — Standard Webhooks signature, and for
 * Hookpost also X-Truto-Signature — and its body checked against the integrity check
 * the driver put in the event. Counts unique deliveries, duplicates and failures per
 * phase (re-deliveries of an earlier phase are recognised as late duplicates) and
 * records ingest-to-receipt latency. Answers 204 to every delivery (a bad
 * one is counted here, not retried), so counts are not disturbed by retries.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { verifyStandard, verifyTruto } from '@hookpost/contract/signing';
import { listenHttp } from '@hookpost/runtime';
import { checkOf, fixedFields, nowUs, type PhaseConfig, type ReceiverStats } from './common.js';

interface PhaseState {
  cfg: PhaseConfig | null;
  stats: ReceiverStats;
  webhooks: Set<string>;
  latencies: number[];
  /** The event (its seq) of each latency sample, in the same order. */
  latencySeqs: number[];
}

const MAX_FAILURE_SAMPLES = 20;
const MAX_BODY = 1024 * 1024;

/**
 * Run-wide memory, so a re-delivery that arrives after its phase ended is still
 * recognised (and verified): every secret registered so far, and for every webhook-id
 * and (event, webhook) pair the phase it was first received in.
 */
const secrets = new Map<string, { secret: string; truto: boolean }>();
const seenIds = new Map<string, string>();
const seenPairs = new Map<string, string>();

function freshState(cfg: PhaseConfig | null): PhaseState {
  for (const [id, secret] of Object.entries(cfg?.secrets ?? {})) secrets.set(id, { secret, truto: cfg?.requireTruto ?? false });
  return {
    cfg,
    webhooks: new Set(),
    latencies: [],
    latencySeqs: [],
    stats: {
      phase: cfg?.phase ?? '(idle)',
      unique: 0,
      duplicateIds: 0,
      duplicateEvents: 0,
      lateDuplicates: 0,
      failures: 0,
      failureSamples: [],
      stray: 0,
      requests: 0,
      distinctWebhooks: 0,
      firstAtUs: null,
      lastAtUs: null,
      completeAtUs: null,
    },
  };
}

let state = freshState(null);
let run: string | null = null;

function fail(reason: string): void {
  state.stats.failures++;
  if (state.stats.failureSamples.length < MAX_FAILURE_SAMPLES) state.stats.failureSamples.push(reason);
}

function sameFixed(data: Record<string, unknown>, seq: number): boolean {
  const want = fixedFields(seq);
  for (const [k, v] of Object.entries(want)) {
    const got = data[k];
    if (Array.isArray(v)) {
      if (!Array.isArray(got) || got.length !== v.length || v.some((x, i) => got[i] !== x)) return false;
    } else if (got !== v) return false;
  }
  return true;
}

function handle(req: IncomingMessage, raw: Buffer, receivedUs: number): void {
  const s = state;
  const cfg = s.cfg;
  s.stats.requests++;
  const msgId = String(req.headers['webhook-id']);
  let body: { id?: unknown; event?: unknown; payload?: unknown; webhook_id?: unknown };
  try {
    body = JSON.parse(raw.toString('utf8')) as typeof body;
  } catch {
    fail(`body is not JSON (${raw.length} bytes, webhook-id ${msgId})`);
    return;
  }
  const data = (body?.payload ?? null) as Record<string, unknown> | null;
  if (!data || typeof data !== 'object' || data.bench_run !== run || typeof data.bench_phase !== 'string') {
    fail(`body has no payload of this bench run (webhook-id ${msgId}): ${raw.toString('utf8').slice(0, 200)}`);
    return;
  }
  const phase = data.bench_phase;
  const webhookId = typeof body.webhook_id === 'string' ? body.webhook_id : '';
  const known = secrets.get(webhookId);
  if (!known) {
    fail(`unknown webhook_id ${JSON.stringify(body.webhook_id)} (webhook-id ${msgId})`);
    return;
  }
  const std = verifyStandard([known.secret], req.headers, raw);
  if (!std.ok) {
    fail(`standard signature: ${std.reason} (webhook-id ${msgId})`);
    return;
  }
  if (known.truto) {
    const sig = req.headers['x-truto-signature'];
    const t = verifyTruto([known.secret], Array.isArray(sig) ? sig[0] : sig, raw);
    if (!t.ok) {
      fail(`x-truto-signature: ${t.reason} (webhook-id ${msgId})`);
      return;
    }
  }
  const seq = data.seq;
  const sentUs = data.sent_us;
  if (
    typeof seq !== 'number' ||
    typeof sentUs !== 'number' ||
    body.event !== 'record:created' ||
    typeof body.id !== 'string' ||
    data.check !== checkOf(run as string, phase, seq, sentUs) ||
    data.id !== `contact_${seq}` ||
    !sameFixed(data, seq)
  ) {
    fail(`corrupted body (webhook-id ${msgId}): ${raw.toString('utf8').slice(0, 300)}`);
    return;
  }
  const current = cfg?.phase;
  const firstIdPhase = seenIds.get(msgId);
  if (firstIdPhase !== undefined) {
    if (firstIdPhase === current) s.stats.duplicateIds++;
    else s.stats.lateDuplicates++;
    return;
  }
  seenIds.set(msgId, phase);
  const pair = `${body.id}|${webhookId}`;
  const firstPairPhase = seenPairs.get(pair);
  if (firstPairPhase !== undefined) {
    if (firstPairPhase === current) s.stats.duplicateEvents++;
    else s.stats.lateDuplicates++;
    return;
  }
  seenPairs.set(pair, phase);
  if (phase !== current) {
    // First receipt of an event from another phase (it should have arrived then).
    s.stats.stray++;
    return;
  }
  s.webhooks.add(webhookId);
  s.stats.unique++;
  s.stats.firstAtUs ??= receivedUs;
  s.stats.lastAtUs = receivedUs;
  if (cfg?.collectLatency) {
    s.latencies.push((receivedUs - sentUs) / 1000);
    s.latencySeqs.push(seq);
  }
  if (s.stats.unique === cfg?.expected) s.stats.completeAtUs = receivedUs;
}

const server = createServer({ keepAliveTimeout: 65_000, requestTimeout: 60_000 }, (req: IncomingMessage, res: ServerResponse) => {
  const chunks: Buffer[] = [];
  let size = 0;
  let tooBig = false;
  req.on('data', (c: Buffer) => {
    size += c.length;
    if (size > MAX_BODY) tooBig = true;
    else chunks.push(c);
  });
  req.on('end', () => {
    const receivedUs = nowUs();
    if (tooBig) fail(`body over ${MAX_BODY} bytes`);
    else if (req.method !== 'POST') fail(`unexpected ${req.method} ${req.url}`);
    else handle(req, chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks), receivedUs);
    res.writeHead(204);
    res.end();
  });
  req.on('error', () => fail('request stream error'));
});
server.headersTimeout = 60_000;
server.maxRequestsPerSocket = 0;

type Msg =
  | { type: 'reset'; req: number; cfg: PhaseConfig | null }
  | { type: 'stats'; req: number; withLatencies?: boolean }
  | { type: 'stop'; req: number };

process.on('message', (m: Msg) => {
  const reply = (payload: Record<string, unknown>) => process.send?.({ ...payload, req: m.req });
  if (m.type === 'reset') {
    if (m.cfg) run ??= m.cfg.run;
    state = freshState(m.cfg);
    reply({ type: 'ok' });
  } else if (m.type === 'stats') {
    state.stats.distinctWebhooks = state.webhooks.size;
    reply({ type: 'stats', stats: { ...state.stats, ...(m.withLatencies ? { latenciesMs: state.latencies, latencySeqs: state.latencySeqs } : {}) } });
  } else if (m.type === 'stop') {
    server.closeAllConnections();
    server.close(() => {
      reply({ type: 'ok' });
      process.exit(0);
    });
  }
});
// The driver is gone: stop too.
process.on('disconnect', () => process.exit(0));

// As the product's servers listen (the same accept queue: a worker opens up to 512 connections at once).
void listenHttp(server, '127.0.0.1', 0).then(() => {
  process.send?.({ type: 'ready', port: (server.address() as AddressInfo).port, pid: process.pid });
});
// Exit normally when stopped by signal (so --cpu-prof and the like can write their files).
process.on('SIGTERM', () => process.exit(0));
