/**
 * (g) Virtual webhooks at scale: 10,000 virtual webhooks (4 per connection, each on its
 * own object type, so nothing is shared: one poll per webhook per minute) at a
 * one-minute interval against the mock provider, whose generator changes records
 * while we watch. After every stream has had its first (baseline) run, a window of
 * BENCH_VIRTUAL_SECONDS is measured: polls/s, schedule lag (how late a poll starts
 * after its due time) p50/p99, changes delivered (every one signature-checked), and
 * the worker's CPU and peak RSS.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { verifyStandard, verifyUnified } from '@hookpost/contract/signing';
import { createDatabase, dropDatabase, freePort } from '@hookpost/db';
import { SERVICE_NODE_FLAGS } from '@hookpost/runtime';
import pg from 'pg';
import { envInt, log, percentile, sleep } from './common.js';
import type { Ctx } from './context.js';
import { ApiClient, hookpostEnv } from './hookpost.js';
import { BenchFailure, closedLoop } from './load.js';
import { cpuSeconds, memoryOf, ServiceProc } from './procs.js';

export interface VirtualResult {
  webhooks: number;
  connections: number;
  windowSeconds: number;
  setupSeconds: number;
  /**
   * Seconds past the time every stream's first run was due (one interval after the last
   * webhook was created, + 5 s) until the last of them had finished: the catch-up after
   * 10,000 webhooks are created at once, not part of the window. Null: not all had
   * finished when the wait gave up (the window then measured part of the catch-up).
   */
  firstRunsLateSeconds: number | null;
  polls: number;
  pollsPerSec: number;
  expectedPollsPerSec: number;
  lagP50Ms: number;
  lagP99Ms: number;
  lagMaxMs: number;
  /** Streams more than 5 s past their due time when the window closed. */
  overdue: number;
  failedRuns: number;
  deliveries: number;
  recordsDelivered: number;
  generated: number;
  badSignatures: number;
  duplicateRecords: number;
  workerCpuPct: number;
  providerCpuPct: number;
  workerHwmMb: number;
  notes: string[];
}

const OBJECTS = [
  { object_type: 'crm_contact', event: 'updated' },
  { object_type: 'crm_deal', event: 'updated' },
  { object_type: 'crm_company', event: 'created' },
  { object_type: 'hris_employee', event: 'updated' },
] as const;

/** Verifies every delivery (Standard Webhooks + unified sig256) and tallies records. */
class VirtualReceiver {
  readonly secrets = new Map<string, string>();
  deliveries = 0;
  records = 0;
  bad = 0;
  readonly badSamples: string[] = [];
  duplicates = 0;
  counting = false;
  private readonly seen = new Set<string>();
  private server: Server | undefined;
  url = '';

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      void this.handle(req).then(
        (status) => {
          res.writeHead(status).end();
        },
        () => res.writeHead(500).end(),
      );
    });
    this.server.keepAliveTimeout = 60_000;
    await new Promise<void>((r) => this.server?.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  private async handle(req: IncomingMessage): Promise<number> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks);
    const body = JSON.parse(raw.toString('utf8')) as { webhook?: { id?: string }; data: { id: string; updated_at: string }[]; nonce?: string; sig256?: string };
    const webhookId = String(body.webhook?.id ?? '');
    const secret = this.secrets.get(webhookId);
    const std = secret === undefined ? { ok: false, reason: 'no secret known for this webhook' } : verifyStandard([secret], req.headers, raw);
    const uni = secret === undefined ? std : verifyUnified([secret], body);
    if (!std.ok || !uni.ok) {
      this.bad += 1;
      if (this.badSamples.length < 5) this.badSamples.push(`${webhookId}: ${std.ok ? '' : `standard ${'reason' in std ? std.reason : ''}`} ${uni.ok ? '' : `unified ${'reason' in uni ? uni.reason : ''}`}`);
    }
    if (this.counting) {
      this.deliveries += 1;
      for (const r of body.data) {
        const key = `${webhookId}|${r.id}|${r.updated_at}`;
        if (this.seen.has(key)) this.duplicates += 1;
        else this.seen.add(key);
        this.records += 1;
      }
    }
    return 200;
  }

  async stop(): Promise<void> {
    await new Promise<void>((r) => this.server?.close(() => r()));
  }
}

export async function runVirtual(ctx: Ctx): Promise<VirtualResult | { skipped: string }> {
  const { repoRoot } = ctx;
  const webhooks = envInt('BENCH_VIRTUAL_WEBHOOKS', 10_000, 4, 200_000);
  const windowSeconds = envInt('BENCH_VIRTUAL_SECONDS', 120, 10, 3600);
  const connections = Math.ceil(webhooks / OBJECTS.length);
  const mains = ['apps/api/dist/main.js', 'apps/delivery-worker/dist/main.js', 'apps/mock-provider/dist/main.js'].map((f) => path.join(repoRoot, f));
  for (const f of mains) if (!existsSync(f)) return { skipped: `${path.relative(repoRoot, f)} is missing (run \`pnpm build\`)` };
  const [apiMain, workerMain, providerMain] = mains as [string, string, string];

  const dbName = `bench_virtual_${randomBytes(4).toString('hex')}`;
  const url = await createDatabase(ctx.serverUrl, dbName);
  const db = new pg.Client({ connectionString: url, application_name: 'bench-virtual' });
  await db.connect();
  const receiver = new VirtualReceiver();
  await receiver.start();
  const port = await freePort();
  const adminToken = randomBytes(18).toString('base64url');
  const env = hookpostEnv(url, adminToken);
  const notes: string[] = [];
  const procs: ServiceProc[] = [];
  const client = new ApiClient(`http://127.0.0.1:${port}`, 32);
  try {
    // The mock provider: 25 records per object type per account; its generator changes
    // each account's records a few times a minute.
    const provider = ServiceProc.spawnNode(
      'mock-provider',
      providerMain,
      {
        PATH: process.env.PATH,
        MOCK_PROVIDER_PORT: '0',
        LOG_LEVEL: 'info',
        MOCK_PROVIDER_RECORDS: '25',
        MOCK_PROVIDER_CREATES_PER_MIN: process.env.BENCH_VIRTUAL_CREATES_PER_MIN ?? '0.5',
        MOCK_PROVIDER_UPDATES_PER_MIN: process.env.BENCH_VIRTUAL_UPDATES_PER_MIN ?? '1',
        MOCK_PROVIDER_DELETES_PER_MIN: process.env.BENCH_VIRTUAL_DELETES_PER_MIN ?? '0.1',
      },
      ctx.logDir,
      repoRoot,
    );
    procs.push(provider);
    let providerUrl = '';
    for (let i = 0; i < 300 && !providerUrl; i++) {
      const m = /"url":"(http:\/\/127\.0\.0\.1:\d+)"/.exec(provider.lastLines(40));
      if (m?.[1]) providerUrl = m[1];
      else await sleep(100);
    }
    if (!providerUrl) throw new BenchFailure(`mock provider did not start: ${provider.lastLines()}`);

    const api = ServiceProc.spawnNode('virtual-api', apiMain, { ...env, API_PORT: String(port) }, ctx.logDir, repoRoot, [...SERVICE_NODE_FLAGS]);
    procs.push(api);
    for (let i = 0; ; i++) {
      if (api.alive()) throw new BenchFailure(`API did not start: ${api.alive()}`);
      if (await client.call('GET', '/healthz', null).then((r) => r.status === 200, () => false)) break;
      if (i >= 600) throw new BenchFailure('API: /healthz not 200 within 60 s');
      await sleep(100);
    }
    const ws = await client.expect(201, 'POST', '/v1/admin/workspaces', adminToken, { name: 'bench-virtual' });
    const key = String((ws.api_key as { key: string }).key);
    const worker = ServiceProc.spawnNode('virtual-worker', workerMain, env, ctx.logDir, repoRoot, [...SERVICE_NODE_FLAGS]);
    procs.push(worker);

    // Setup (not measured): connections, then webhooks, then their secrets.
    const setupStart = Date.now();
    log(`virtual: creating ${connections} connections and ${webhooks} webhooks (interval 1 min)`);
    const connIds: string[] = new Array<string>(connections);
    await closedLoop(connections, 16, async (i) => {
      const c = await client.expect(200, 'POST', '/unified/connection', key, {
        integration_type: 'mockcrm',
        categories: ['crm'],
        permissions: [],
        auth: { api_url: providerUrl, access_token: `bench-${i}` },
      });
      connIds[i] = String(c.id);
    });
    const hookIds: string[] = new Array<string>(webhooks);
    await closedLoop(webhooks, 16, async (i) => {
      const o = OBJECTS[i % OBJECTS.length] as (typeof OBJECTS)[number];
      const w = await client.expect(200, 'POST', '/unified/webhook', key, {
        connection_id: connIds[Math.floor(i / OBJECTS.length)],
        object_type: o.object_type,
        event: o.event,
        hook_url: `${receiver.url}/v`,
        interval: 1,
      });
      hookIds[i] = String(w.id);
      // Known before the webhook's first delivery can arrive (its first run is silent, a minute away).
      const s = await client.expect(200, 'GET', `/v1/webhooks/${String(w.id)}/secret`, key);
      receiver.secrets.set(String(w.id), String(s.secret));
    });
    const created = Date.now();
    const setupSeconds = (Date.now() - setupStart) / 1000;
    log(`virtual: set up in ${setupSeconds.toFixed(1)} s; waiting for every stream's first (baseline) run`);

    // Every stream is first due one interval after its creation (± jitter).
    const firstRunsDone = created + 60_000 + 5_000;
    while (Date.now() < firstRunsDone) {
      if (worker.alive()) throw new BenchFailure(`worker died: ${worker.alive()}`);
      await sleep(1000);
    }
    // A slow host may still be working through the first runs (each reads its source in
    // full): the window measures the steady state after them, so it waits for the last one.
    const waitLimitS = envInt('BENCH_VIRTUAL_FIRST_RUNS_WAIT_S', 180, 0, 3600);
    let firstRunsLateSeconds: number | null = null;
    for (;;) {
      const pending = await db.query<{ n: number }>('select count(*)::int as n from poll_streams where high_water_mark is null');
      const n = pending.rows[0]?.n ?? 0;
      const late = (Date.now() - firstRunsDone) / 1000;
      if (n === 0) {
        firstRunsLateSeconds = late;
        break;
      }
      if (late >= waitLimitS) {
        notes.push(`${n} streams had not finished their first run when the window opened (after waiting ${waitLimitS} s past their due time): the window measured part of the catch-up`);
        break;
      }
      if (worker.alive()) throw new BenchFailure(`worker died: ${worker.alive()}`);
      await sleep(1000);
    }
    if (firstRunsLateSeconds !== null && firstRunsLateSeconds >= 1) log(`virtual: the last first run finished ${firstRunsLateSeconds.toFixed(0)} s after every stream was due`);

    log(`virtual: measuring ${windowSeconds} s`);
    receiver.counting = true;
    const windowStart = new Date();
    const cpu0 = { worker: cpuSeconds(worker.pid), provider: cpuSeconds(provider.pid) };
    const t0 = Date.now();
    const genBefore = await fetch(`${providerUrl}/_control/stats`).then((r) => r.json() as Promise<{ generated: { creates: number; updates: number; deletes: number } }>);
    let hwm = 0;
    while (Date.now() - t0 < windowSeconds * 1000) {
      if (worker.alive()) throw new BenchFailure(`worker died: ${worker.alive()}`);
      hwm = Math.max(hwm, memoryOf(worker.pid)?.hwmMb ?? 0);
      await sleep(1000);
    }
    const elapsed = (Date.now() - t0) / 1000;
    const cpu1 = { worker: cpuSeconds(worker.pid), provider: cpuSeconds(provider.pid) };
    const windowEnd = new Date();
    const genAfter = await fetch(`${providerUrl}/_control/stats`).then((r) => r.json() as Promise<{ generated: { creates: number; updates: number; deletes: number } }>);
    receiver.counting = false;
    hwm = Math.max(hwm, memoryOf(worker.pid)?.hwmMb ?? 0);

    const runs = await db.query<{ lag_ms: number; status: string }>(
      `select extract(epoch from (started_at - scheduled_at)) * 1000 as lag_ms, status
       from poll_runs where started_at >= $1 and started_at < $2`,
      [windowStart, windowEnd],
    );
    const lags = runs.rows.map((r) => Number(r.lag_ms)).sort((a, b) => a - b);
    const generated = (g: typeof genAfter) => g.generated.creates + g.generated.updates + g.generated.deletes;
    const result: VirtualResult = {
      webhooks,
      connections,
      windowSeconds: elapsed,
      setupSeconds,
      firstRunsLateSeconds,
      polls: runs.rows.length,
      pollsPerSec: runs.rows.length / elapsed,
      expectedPollsPerSec: webhooks / 60,
      lagP50Ms: percentile(lags, 50),
      lagP99Ms: percentile(lags, 99),
      lagMaxMs: lags.at(-1) ?? 0,
      overdue: 0,
      failedRuns: runs.rows.filter((r) => r.status === 'failed').length,
      deliveries: receiver.deliveries,
      recordsDelivered: receiver.records,
      generated: generated(genAfter) - generated(genBefore),
      badSignatures: receiver.bad,
      duplicateRecords: receiver.duplicates,
      workerCpuPct: ((cpu1.worker - cpu0.worker) / elapsed) * 100,
      providerCpuPct: ((cpu1.provider - cpu0.provider) / elapsed) * 100,
      workerHwmMb: hwm,
      notes,
    };
    log(
      `virtual: ${result.polls} polls in ${elapsed.toFixed(0)} s = ${result.pollsPerSec.toFixed(1)}/s (expected ${result.expectedPollsPerSec.toFixed(1)}); ` +
        `lag p50 ${result.lagP50Ms.toFixed(0)} ms, p99 ${result.lagP99Ms.toFixed(0)} ms; ${result.recordsDelivered} records in ${result.deliveries} deliveries; ` +
        `worker CPU ${result.workerCpuPct.toFixed(0)} %, RSS peak ${hwm.toFixed(0)} MB`,
    );
    const overdue = await db.query<{ n: number }>(`select count(*)::int as n from poll_streams where next_run_at < $1::timestamptz - interval '5 seconds'`, [windowEnd]);
    result.overdue = overdue.rows[0]?.n ?? 0;
    const state = await db.query<Record<string, number>>(`
      select (select count(*)::int from poll_streams) as streams,
             (select count(*)::int from poll_streams where high_water_mark is not null) as streams_run,
             (select count(*)::int from poll_runs) as runs_total,
             (select count(*)::int from connection_polls where next_due_at <= now()) as connections_due,
             (select count(*)::int from connection_polls where lease_until > now()) as connections_leased`);
    notes.push(`state at the end: ${JSON.stringify(state.rows[0])}`);
    if (receiver.bad > 0) throw new BenchFailure(`virtual: ${receiver.bad} deliveries failed signature verification, e.g. ${receiver.badSamples.join('; ')}`);
    if (receiver.duplicates > 0) throw new BenchFailure(`virtual: ${receiver.duplicates} records were delivered twice to the same webhook`);
    if (result.failedRuns > 0) notes.push(`${result.failedRuns} runs failed in the window (see the worker log)`);
    return result;
  } finally {
    await Promise.all(procs.reverse().map((p) => p.stop()));
    await receiver.stop();
    await client.pool.close();
    await db.end();
    await dropDatabase(ctx.serverUrl, dbName).catch(() => undefined);
  }
}

/** The (g) table, printed after the main one. */
export function renderVirtual(r: VirtualResult | { skipped: string } | undefined): string {
  if (!r) return '';
  if ('skipped' in r) return `\n(g) virtual webhooks: SKIPPED — ${r.skipped}\n`;
  // Sustained: every stream ran on time (p99 lag < 5 s) and none was left overdue at the end.
  const met = r.polls > 0 && r.lagP99Ms < 5000 && r.overdue === 0;
  const rows: [string, string][] = [
    ['virtual webhooks / connections (4 object types each, no stream shared)', `${r.webhooks.toLocaleString('en-US')} / ${r.connections.toLocaleString('en-US')}`],
    ['interval', '1 min'],
    ['first (baseline) runs: the last finished, s after all were due', r.firstRunsLateSeconds === null ? 'not all (see note)' : r.firstRunsLateSeconds.toFixed(0)],
    ['measured window (after every stream\'s first run)', `${r.windowSeconds.toFixed(0)} s`],
    ['polls/s in the window (webhooks / 60 s expected)', `${r.pollsPerSec.toFixed(1)} (${r.expectedPollsPerSec.toFixed(1)})`],
    ['schedule lag p50 / p99 / max, ms', r.polls === 0 ? '— (no run in the window)' : `${r.lagP50Ms.toFixed(0)} / ${r.lagP99Ms.toFixed(0)} / ${r.lagMaxMs.toFixed(0)}`],
    ['streams overdue by > 5 s when the window closed', String(r.overdue)],
    ['target: every webhook polled each minute, lag p99 < 5 s', met ? 'met' : 'MISSED'],
    ['source changes made in the window (all accounts, all types)', r.generated.toLocaleString('en-US')],
    ['records delivered (deliveries), every signature verified', `${r.recordsDelivered.toLocaleString('en-US')} (${r.deliveries.toLocaleString('en-US')})`],
    ['failed runs / records delivered twice', `${r.failedRuns} / ${r.duplicateRecords}`],
    ['worker CPU (of one core) / peak RSS', `${r.workerCpuPct.toFixed(0)} % / ${r.workerHwmMb.toFixed(0)} MB`],
    ['mock provider CPU', `${r.providerCpuPct.toFixed(0)} %`],
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  const lines = rows.map(([k, v]) => `| ${k.padEnd(w)} | ${v} |`);
  return [
    '',
    '(g) virtual webhooks polling the mock provider',
    '',
    `| ${'Metric'.padEnd(w)} | Hookpost |`,
    `|:${'-'.repeat(w + 1)}|---------:|`,
    ...lines,
    ...r.notes.map((n) => `note: ${n}`),
    '',
  ].join('\n');
}
