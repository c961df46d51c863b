/**
 * The pg-boss baseline, driver side: its own fresh database, producers in this
 * process (bulk `insert` of 1000 jobs per call; or 32 concurrent producers each
 * `send`ing one job), the worker in a child process (pgboss-worker.ts). One queue for
 * the whole run, as in production: pg-boss 10 keeps completed jobs in their queue for
 * 12 hours by default (`archiveCompletedAfterSeconds`), so each measurement runs with the
 * history of the ones before it, as Hookpost's does. The worker polls only while pg-boss
 * is being measured.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateWebhookSecret } from '@hookpost/contract/signing';
import { createDatabase, dropDatabase } from '@hookpost/db';
import PgBoss from 'pg-boss';
import { eventData, log, nowUs, PGBOSS_QUEUE, type DeliveryJob, type PhaseConfig } from './common.js';
import type { Contender, Ctx, SystemResult } from './context.js';
import { closedLoop, describe, measurePhase, measureSteady, tail, throughputOf, type LateTally } from './load.js';
import { CpuMeter, IpcChannel, memoryOf, readyMessage, ServiceProc } from './procs.js';
import { autoExplain, SlowQuerySampler } from './slow-queries.js';

const here = path.dirname(fileURLToPath(import.meta.url));

export async function startPgBoss(ctx: Ctx): Promise<Contender> {
  const { cfg, receiver, run } = ctx;
  const result: SystemResult = { name: 'pg-boss', notes: [] };
  const dbName = `bench_pgboss_${randomBytes(4).toString('hex')}`;
  const url = await createDatabase(ctx.serverUrl, dbName);
  await autoExplain(ctx.serverUrl, dbName);
  log(`pg-boss: database ${dbName}`);
  const sampler = new SlowQuerySampler(ctx.serverUrl, dbName);
  const late: LateTally = { lateDuplicates: 0, stray: 0 };
  let worker: ServiceProc | undefined;
  let stopping = false;
  // Producers: enough connections for 32 concurrent one-job sends.
  const boss = new PgBoss({ connectionString: url, max: cfg.clients + 4, supervise: false, schedule: false, application_name: 'bench-pgboss-producer' });
  boss.on('error', (err) => {
    if (!stopping) log(`pg-boss producer error: ${String((err as Error)?.message ?? err)}`);
  });
  const stop = async () => {
    stopping = true;
    await worker?.stop();
    await boss.stop({ graceful: false, wait: true, timeout: 5000 }).catch(() => undefined);
    result.slowStatements = await sampler.stop();
    await dropDatabase(ctx.serverUrl, dbName).catch((err: unknown) => log(`could not drop ${dbName}: ${String(err)}`));
  };
  try {
    await sampler.start();
    sampler.setPhase('setup');
    await boss.start();

    const webhookId = randomUUID();
    const secret = generateWebhookSecret();
    worker = ServiceProc.forkNode(
      'pgboss-worker',
      path.join(here, 'pgboss-worker.js'),
      {
        ...process.env,
        BOSS_DATABASE_URL: url,
        RECEIVER_URL: receiver.url,
        BOSS_SECRET: secret,
        BOSS_WEBHOOK_ID: webhookId,
        BOSS_WORKERS: String(cfg.boss.workers),
        BOSS_BATCH: String(cfg.boss.batch),
        BOSS_POLL_S: String(cfg.boss.pollS),
        BOSS_CONNECTIONS: String(cfg.boss.connections),
      },
      ctx.logDir,
    );
    const w = worker;
    const ready = await readyMessage<{ config: unknown }>(w.child, 'pg-boss worker', 30_000, () => `:\n${w.lastLines()}`);
    result.notes.push(`pg-boss worker: ${JSON.stringify(ready.config)}`);
    log(`pg-boss: worker ready ${JSON.stringify(ready.config)}`);
    const workerIpc = new IpcChannel(w.child, 'pg-boss worker');

    await boss.createQueue(PGBOSS_QUEUE);
    const workOn = async (queue: string | null) => {
      const answer = await workerIpc.call({ type: 'work', queue });
      if (answer.type !== 'ok') throw new Error(`pg-boss worker could not work ${String(queue)}: ${String(answer.message)}`);
    };
    /** Runs one measurement with the worker's loops running; they stop polling afterwards. */
    const measuring = async <T>(phase: string, body: (queue: string) => Promise<T>): Promise<T> => {
      sampler.setPhase(phase);
      await workOn(PGBOSS_QUEUE);
      try {
        return await body(PGBOSS_QUEUE);
      } finally {
        await workOn(null);
      }
    };

    const meter = () => CpuMeter.start({ worker: w.pid, receiver: receiver.child.pid ?? 0 }, ctx.serverUrl);
    const limits = { timeoutMs: cfg.drainTimeoutMs, stallMs: cfg.stallMs, isAlive: w.alive, cpu: meter };
    const phaseCfg = (phase: string, expected: number, collectLatency = false): PhaseConfig => ({
      phase,
      run,
      secrets: { [webhookId]: secret },
      requireTruto: false,
      expected,
      collectLatency,
    });
    const job = (phase: string, seq: number, sentUs = nowUs()): DeliveryJob => ({
      event_id: randomUUID(),
      created_at: new Date().toISOString(),
      data: eventData(run, phase, seq, sentUs),
    });
    const bulk = (queue: string, phase: string, n: number) =>
      closedLoop(Math.ceil(n / cfg.batchSize), cfg.batchConcurrency, async (b) => {
        const jobs: PgBoss.JobInsert<DeliveryJob>[] = [];
        for (let i = b * cfg.batchSize; i < Math.min(n, (b + 1) * cfg.batchSize); i++) jobs.push({ name: queue, data: job(phase, i) });
        await boss.insert(jobs);
      });
    const sendOne = async (queue: string, phase: string, i: number, sentUs?: number) => {
      const id = await boss.send(queue, job(phase, i, sentUs));
      if (!id) throw new Error('pg-boss send returned no id');
    };

    if (cfg.warmup > 0) {
      await measuring('warm-up', (q) => measurePhase(receiver, phaseCfg('pgboss-warmup', cfg.warmup), limits, () => bulk(q, 'pgboss-warmup', cfg.warmup), late));
    }

    return {
      result,
      databaseUrl: url,
      batch: (round) =>
        measuring(`a${round}`, async (q) => {
          const phase = `pgboss-bulk-${round}`;
          log(`pg-boss: (a) round ${round}: ${cfg.events} events, insert ${cfg.batchSize} per call, ${cfg.batchConcurrency} calls in flight`);
          const a = await measurePhase(receiver, phaseCfg(phase, cfg.events), limits, () => bulk(q, phase, cfg.events), late);
          const t = throughputOf(cfg.events, a);
          log(`pg-boss: (a) round ${round} drained in ${a.drainSeconds.toFixed(2)} s = ${Math.round(t.deliveredPerSec)}/s (${describe(a.stats)})`);
          return t;
        }),
      single: (round) =>
        measuring(`b${round}`, async (q) => {
          const phase = `pgboss-single-${round}`;
          log(`pg-boss: (b) round ${round}: ${cfg.singleEvents} events, one send per event, ${cfg.clients} producers`);
          const b = await measurePhase(receiver, phaseCfg(phase, cfg.singleEvents), limits, () => closedLoop(cfg.singleEvents, cfg.clients, (i) => sendOne(q, phase, i)), late);
          const t = throughputOf(cfg.singleEvents, b);
          log(`pg-boss: (b) round ${round} drained in ${b.drainSeconds.toFixed(2)} s = ${Math.round(t.deliveredPerSec)}/s (${describe(b.stats)})`);
          return t;
        }),
      steady: () =>
        measuring('c', async (q) => {
          log(`pg-boss: (c) ${cfg.pgbossRate}/s for ${cfg.steadyLeadSeconds} + ${cfg.steadySeconds} s (open loop, one send per event; the first ${cfg.steadyLeadSeconds} s not in the percentiles)`);
          const timing = { rate: cfg.pgbossRate, seconds: cfg.steadySeconds, leadSeconds: cfg.steadyLeadSeconds };
          const fire = (i: number, scheduledUs: number) => sendOne(q, 'pgboss-steady', i, scheduledUs);
          const l = await measureSteady(receiver, timing, (n) => phaseCfg('pgboss-steady', n, true), limits, fire, late, path.join(ctx.logDir, 'pgboss-c-samples.json'));
          log(`pg-boss: (c) p50 ${l.p50.toFixed(1)} ms, p99 ${l.p99.toFixed(1)} ms; lead-in p99 ${l.leadP99.toFixed(1)} ms`);
          return l;
        }),
      // The do-it-yourself fan-out: the producer writes one job per subscriber, in one insert.
      fanout: () =>
        measuring('d', async (q) => {
          const subscribers = Array.from({ length: cfg.fanout }, () => randomUUID());
          const eventId = randomUUID();
          const data = eventData(run, 'pgboss-fanout', 0, nowUs());
          const createdAt = new Date().toISOString();
          let commitMs = Number.NaN;
          log(`pg-boss: (d) one event → ${cfg.fanout} jobs in one insert call`);
          const d = await measurePhase(
            receiver,
            { phase: 'pgboss-fanout', run, secrets: Object.fromEntries(subscribers.map((s) => [s, secret])), requireTruto: false, expected: cfg.fanout, collectLatency: false },
            limits,
            async () => {
              const t0 = nowUs();
              await boss.insert(subscribers.map((s) => ({ name: q, data: { event_id: eventId, webhook_id: s, created_at: createdAt, data } })));
              commitMs = (nowUs() - t0) / 1000;
            },
            late,
          );
          log(`pg-boss: (d) commit ${commitMs.toFixed(0)} ms, all ${cfg.fanout} delivered in ${(d.drainSeconds * 1000).toFixed(0)} ms (${describe(d.stats)})`);
          return { webhooks: cfg.fanout, setupSeconds: 0, commitMs, deliverAllMs: d.drainSeconds * 1000, duplicates: d.stats.duplicateIds + d.stats.duplicateEvents, lateDuplicates: d.stats.lateDuplicates };
        }),
      finish: async () => {
        try {
          await tail(receiver, run, 'pgboss', late);
          result.late = late;
          result.workerHwmMb = memoryOf(w.pid)?.hwmMb;
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
