/**
 * Hookpost, the system under test: the built API and delivery worker as separate
 * processes on a fresh database, driven only through the public HTTP API.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { createDatabase, dropDatabase, freePort } from '@hookpost/db';
import { SERVICE_NODE_FLAGS } from '@hookpost/runtime';
import { Pool } from 'undici';
import { eventData, log, nowUs, sleep, type PhaseConfig } from './common.js';
import type { Contender, Ctx, SystemResult } from './context.js';
import { BenchFailure, closedLoop, describe, measurePhase, measureSteady, tail, throughputOf, type LateTally } from './load.js';
import { CpuMeter, memoryOf, ServiceProc } from './procs.js';
import { autoExplain, SlowQuerySampler } from './slow-queries.js';

/** Hookpost settings taken from the bench's environment; node flags (e.g. --cpu-prof) via BENCH_HOOKPOST_NODE_ARGS. */
export function passThrough(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v === undefined || v === '') continue;
    if (/^(DELIVERY_|INGEST_|POLL_|DATABASE_POOL_MAX$|EVENTS_BATCH_BODY_LIMIT_BYTES$|RETRY_)/.test(k)) out[k] = v;
  }
  return out;
}

interface ApiAnswer {
  status: number;
  body: unknown;
}

/** The environment of a benchmarked API or worker process (production mode, quiet logs). */
export function hookpostEnv(databaseUrl: string, adminToken: string): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    DATABASE_URL: databaseUrl,
    HOOKPOST_ENCRYPTION_KEY: randomBytes(32).toString('base64'),
    HOOKPOST_ADMIN_TOKEN: adminToken,
    HOOKPOST_SSRF_ALLOWLIST: '127.0.0.0/8',
    LOG_LEVEL: 'warn',
    NODE_ENV: 'production',
    // Hookpost's own tuning knobs pass through when set (reported with the results).
    ...passThrough(),
  };
}

export class ApiClient {
  readonly pool: Pool;
  constructor(
    readonly origin: string,
    connections: number,
  ) {
    this.pool = new Pool(origin, { connections, pipelining: 1, keepAliveTimeout: 30_000 });
  }

  async call(method: 'GET' | 'POST', p: string, token: string | null, body?: unknown): Promise<ApiAnswer> {
    const res = await this.pool.request({
      path: p,
      method,
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
      headersTimeout: 60_000,
      bodyTimeout: 60_000,
    });
    const text = await res.body.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      /* keep text */
    }
    return { status: res.statusCode, body: parsed };
  }

  async expect(status: number, method: 'GET' | 'POST', p: string, token: string | null, body?: unknown): Promise<Record<string, unknown>> {
    const a = await this.call(method, p, token, body);
    if (a.status !== status) {
      throw new BenchFailure(`Hookpost ${method} ${p}: expected ${status}, got ${a.status}: ${JSON.stringify(a.body).slice(0, 500)}`);
    }
    return a.body as Record<string, unknown>;
  }
}

/** Hookpost started and warmed up, or why it could not be measured. */
export async function startHookpost(ctx: Ctx): Promise<Contender | { skipped: string }> {
  const { cfg, receiver, run, repoRoot } = ctx;
  const result: SystemResult = { name: 'Hookpost', notes: [] };
  const apiMain = path.join(repoRoot, 'apps/api/dist/main.js');
  const workerMain = path.join(repoRoot, 'apps/delivery-worker/dist/main.js');
  if (!existsSync(apiMain) || !existsSync(workerMain)) {
    return { skipped: `not built (${path.relative(repoRoot, apiMain)} / ${path.relative(repoRoot, workerMain)} missing; run pnpm build)` };
  }
  const dbName = `bench_hookpost_${randomBytes(4).toString('hex')}`;
  const url = await createDatabase(ctx.serverUrl, dbName);
  await autoExplain(ctx.serverUrl, dbName);
  log(`Hookpost: database ${dbName}`);
  const sampler = new SlowQuerySampler(ctx.serverUrl, dbName);
  const late: LateTally = { lateDuplicates: 0, stray: 0 };
  const port = await freePort();
  const adminToken = randomBytes(18).toString('base64url');
  const env = hookpostEnv(url, adminToken);
  // As deployed (SERVICE_NODE_FLAGS, which the launcher and `npm start` use), plus any extra.
  const extraArgs = (process.env.BENCH_HOOKPOST_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const nodeArgs = [...SERVICE_NODE_FLAGS, ...extraArgs];
  result.notes.push(`node flags: ${nodeArgs.join(' ')}`);
  const tuned = Object.entries(passThrough()).map(([k, v]) => `${k}=${v}`);
  if (tuned.length > 0) result.notes.push(`tuning from the environment: ${tuned.join(' ')}`);
  let api: ServiceProc | undefined;
  let worker: ServiceProc | undefined;
  const client = new ApiClient(`http://127.0.0.1:${port}`, Math.max(cfg.clients, 64));
  const stop = async () => {
    await client.pool.close().catch(() => undefined);
    await worker?.stop();
    await api?.stop();
    result.logProblems = {
      ...(api ? { 'hookpost-api': api.problems() } : {}),
      ...(worker ? { 'hookpost-worker': worker.problems() } : {}),
    };
    result.slowStatements = await sampler.stop();
    await dropDatabase(ctx.serverUrl, dbName).catch((err: unknown) => log(`could not drop ${dbName}: ${String(err)}`));
  };
  try {
    await sampler.start();
    sampler.setPhase('setup');
    api = ServiceProc.spawnNode('hookpost-api', apiMain, { ...env, API_PORT: String(port) }, ctx.logDir, repoRoot, nodeArgs);
    const a = api;
    for (let i = 0; ; i++) {
      const dead = a.alive();
      if (dead) throw new BenchFailure(`Hookpost API did not start: ${dead}`);
      const ok = await client.call('GET', '/healthz', null).then((r) => r.status === 200, () => false);
      if (ok) break;
      if (i >= 600) throw new BenchFailure(`Hookpost API: /healthz not 200 within 60 s; log ${a.logFile}`);
      await sleep(100);
    }

    const ws = await client.expect(201, 'POST', '/v1/admin/workspaces', adminToken, { name: 'bench' });
    const key = (ws.api_key as { key?: string } | undefined)?.key;
    if (!key) throw new BenchFailure(`Hookpost: workspace creation answered without api_key.key: ${JSON.stringify(ws).slice(0, 300)}`);

    // Is the ingest API there at all?
    const probe = await client.call('POST', '/v1/events', key, { type: 'record:created', object_type: 'crm_contact', data: { probe: true } });
    if (probe.status === 404) {
      await stop();
      return { skipped: 'POST /v1/events answers 404: the delivery pipeline has not landed yet' };
    }
    if (probe.status !== 202) throw new BenchFailure(`Hookpost probe POST /v1/events: expected 202, got ${probe.status}: ${JSON.stringify(probe.body).slice(0, 300)}`);

    worker = ServiceProc.spawnNode('hookpost-worker', workerMain, env, ctx.logDir, repoRoot, nodeArgs);
    const w = worker;
    const alive = () => a.alive() ?? w.alive();
    const meter = () => CpuMeter.start({ api: a.pid, worker: w.pid, receiver: receiver.child.pid ?? 0 }, ctx.serverUrl);

    const hook = await client.expect(201, 'POST', '/webhook', key, { target_url: `${receiver.url}/h` });
    const webhookId = String(hook.id);
    const secret = String(hook.secret);
    if (!secret.startsWith('whsec_')) result.notes.push(`webhook secret does not start with whsec_: ${secret.slice(0, 10)}…`);
    const secrets = { [webhookId]: secret };
    const limits = { timeoutMs: cfg.drainTimeoutMs, stallMs: cfg.stallMs, isAlive: alive, cpu: meter };
    const phaseCfg = (phase: string, expected: number, collectLatency = false): PhaseConfig => ({ phase, run, secrets, requireTruto: true, expected, collectLatency });
    const event = (phase: string, seq: number, sentUs = nowUs()) => ({ type: 'record:created', object_type: 'crm_contact', data: eventData(run, phase, seq, sentUs) });

    const batches = (phase: string, n: number) =>
      closedLoop(Math.ceil(n / cfg.batchSize), cfg.batchConcurrency, async (b) => {
        const events = [];
        for (let i = b * cfg.batchSize; i < Math.min(n, (b + 1) * cfg.batchSize); i++) events.push(event(phase, i));
        const r = await client.expect(202, 'POST', '/v1/events/batch', key, { events });
        const accepted = r.events as { deliveries?: number }[] | undefined;
        if (!Array.isArray(accepted) || accepted.length !== events.length || accepted.some((e) => e.deliveries !== 1)) {
          throw new BenchFailure(`Hookpost ${phase}: batch answer does not list ${events.length} events with 1 delivery each: ${JSON.stringify(r).slice(0, 300)}`);
        }
      });
    const single = (phase: string) => async (i: number, sentUs = nowUs()) => {
      const r = await client.expect(202, 'POST', '/v1/events', key, event(phase, i, sentUs));
      if (r.deliveries !== 1) throw new BenchFailure(`Hookpost ${phase}: event ${i} fanned out to ${String(r.deliveries)} webhooks, expected 1`);
    };

    if (cfg.warmup > 0) {
      sampler.setPhase('warm-up');
      log('Hookpost: warm-up (also waits for the worker to be up)');
      await measurePhase(receiver, phaseCfg('hp-warmup', cfg.warmup), { ...limits, stallMs: Math.max(limits.stallMs, 60_000) }, () => batches('hp-warmup', cfg.warmup), late);
      await measurePhase(receiver, phaseCfg('hp-warmup-single', cfg.warmup), limits, () => closedLoop(cfg.warmup, cfg.clients, single('hp-warmup-single')), late);
    }

    return {
      result,
      databaseUrl: url,
      batch: async (round) => {
        sampler.setPhase(`a${round}`);
        const phase = `hp-batch-${round}`;
        log(`Hookpost: (a) round ${round}: ${cfg.events} events in batches of ${cfg.batchSize}, ${cfg.batchConcurrency} requests in flight`);
        const ra = await measurePhase(receiver, phaseCfg(phase, cfg.events), limits, () => batches(phase, cfg.events), late);
        const t = throughputOf(cfg.events, ra);
        log(`Hookpost: (a) round ${round} drained in ${ra.drainSeconds.toFixed(2)} s = ${Math.round(t.deliveredPerSec)}/s; ingest ${Math.round(t.ingestPerSec)}/s (${describe(ra.stats)})`);
        return t;
      },
      single: async (round) => {
        sampler.setPhase(`b${round}`);
        const phase = `hp-single-${round}`;
        log(`Hookpost: (b) round ${round}: ${cfg.singleEvents} events, one per request, ${cfg.clients} clients`);
        const rb = await measurePhase(receiver, phaseCfg(phase, cfg.singleEvents), limits, () => closedLoop(cfg.singleEvents, cfg.clients, single(phase)), late);
        const t = throughputOf(cfg.singleEvents, rb);
        log(`Hookpost: (b) round ${round} drained in ${rb.drainSeconds.toFixed(2)} s = ${Math.round(t.deliveredPerSec)}/s; ingest ${Math.round(t.ingestPerSec)}/s (${describe(rb.stats)})`);
        return t;
      },
      steady: async () => {
        sampler.setPhase('c');
        log(`Hookpost: (c) ${cfg.rate}/s for ${cfg.steadyLeadSeconds} + ${cfg.steadySeconds} s (open loop, one event per request; the first ${cfg.steadyLeadSeconds} s not in the percentiles)`);
        const timing = { rate: cfg.rate, seconds: cfg.steadySeconds, leadSeconds: cfg.steadyLeadSeconds };
        const l = await measureSteady(receiver, timing, (n) => phaseCfg('hp-steady', n, true), limits, single('hp-steady'), late, path.join(ctx.logDir, 'hookpost-c-samples.json'));
        log(`Hookpost: (c) p50 ${l.p50.toFixed(1)} ms, p99 ${l.p99.toFixed(1)} ms, max ${l.max.toFixed(1)} ms; lead-in p99 ${l.leadP99.toFixed(1)} ms`);
        return l;
      },
      // One event → N webhooks (own workspace, so other measurements never see them).
      fanout: async () => {
        result.workerHwmBeforeFanoutMb = memoryOf(w.pid)?.hwmMb;
        sampler.setPhase('d');
        log(`Hookpost: (d) creating ${cfg.fanout} webhooks (${cfg.fanoutCreateConcurrency} concurrent requests; setup, not measured)`);
        const setupStart = Date.now();
        const fws = await client.expect(201, 'POST', '/v1/admin/workspaces', adminToken, { name: 'bench-fanout' });
        const fkey = (fws.api_key as { key?: string } | undefined)?.key as string;
        const fanSecrets: Record<string, string> = {};
        await closedLoop(cfg.fanout, cfg.fanoutCreateConcurrency, async () => {
          const h = await client.expect(201, 'POST', '/webhook', fkey, { target_url: `${receiver.url}/h` });
          fanSecrets[String(h.id)] = String(h.secret);
        });
        const setupSeconds = (Date.now() - setupStart) / 1000;
        log(`Hookpost: (d) ${cfg.fanout} webhooks created in ${setupSeconds.toFixed(1)} s`);
        let commitMs = Number.NaN;
        const rd = await measurePhase(
          receiver,
          { phase: 'hp-fanout', run, secrets: fanSecrets, requireTruto: true, expected: cfg.fanout, collectLatency: false },
          limits,
          async () => {
            const t0 = nowUs();
            const r = await client.expect(202, 'POST', '/v1/events', fkey, event('hp-fanout', 0));
            commitMs = (nowUs() - t0) / 1000;
            if (r.deliveries !== cfg.fanout) throw new BenchFailure(`Hookpost fan-out: the event fanned out to ${String(r.deliveries)} webhooks, expected ${cfg.fanout}`);
          },
          late,
        );
        if (rd.stats.distinctWebhooks !== cfg.fanout) {
          throw new BenchFailure(`Hookpost fan-out: deliveries reached ${rd.stats.distinctWebhooks} distinct webhooks, expected ${cfg.fanout}`);
        }
        log(`Hookpost: (d) commit ${commitMs.toFixed(0)} ms, all ${cfg.fanout} delivered in ${(rd.drainSeconds * 1000).toFixed(0)} ms (${describe(rd.stats)})`);
        return {
          webhooks: cfg.fanout,
          setupSeconds,
          commitMs,
          deliverAllMs: rd.drainSeconds * 1000,
          duplicates: rd.stats.duplicateIds + rd.stats.duplicateEvents,
          lateDuplicates: rd.stats.lateDuplicates,
        };
      },
      finish: async () => {
        try {
          await tail(receiver, run, 'hookpost', late);
          result.late = late;
          result.workerHwmMb = memoryOf(w.pid)?.hwmMb;
          result.apiHwmMb = memoryOf(a.pid)?.hwmMb;
        } finally {
          await stop();
        }
      },
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
