/**
 * The pg-boss baseline, driver side: its own fresh database, producers in this
 * process (bulk `insert` of 1000 jobs per call; or 32 concurrent producers each
 * `send`ing one job), the worker in a child process (pgboss-worker.ts).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateWebhookSecret } from '@hookpost/contract/signing';
import { createDatabase, dropDatabase } from '@hookpost/db';
import PgBoss from 'pg-boss';
import { eventData, log, nowUs, PGBOSS_QUEUE, type DeliveryJob, type PhaseConfig } from './common.js';
import type { Ctx, SystemResult } from './context.js';
import { closedLoop, describe, latencyOf, measurePhase, openLoop, tail, throughputOf, type LateTally } from './load.js';
import { CpuMeter, memoryOf, ServiceProc } from './procs.js';
import { autoExplain, SlowQuerySampler } from './slow-queries.js';

const here = path.dirname(fileURLToPath(import.meta.url));

export async function runPgBoss(ctx: Ctx): Promise<SystemResult> {
  const { cfg, receiver, run } = ctx;
  const result: SystemResult = { name: 'pg-boss', notes: [] };
  const dbName = `bench_pgboss_${randomBytes(4).toString('hex')}`;
  const url = await createDatabase(ctx.serverUrl, dbName);
  await autoExplain(ctx.serverUrl, dbName);
  log(`pg-boss: database ${dbName}`);
  const sampler = new SlowQuerySampler(ctx.serverUrl, dbName);
  const late: LateTally = { lateDuplicates: 0, stray: 0 };
  let producer: PgBoss | undefined;
  let worker: ServiceProc | undefined;
  let stopProducer = async () => undefined as void;
  try {
    await sampler.start();
    sampler.setPhase('setup');
    // Producers: enough connections for 32 concurrent one-job sends.
    producer = new PgBoss({ connectionString: url, max: cfg.clients + 4, supervise: false, schedule: false, application_name: 'bench-pgboss-producer' });
    let stopping = false;
    producer.on('error', (err) => {
      if (!stopping) log(`pg-boss producer error: ${String((err as Error)?.message ?? err)}`);
    });
    stopProducer = async () => {
      stopping = true;
      await producer?.stop({ graceful: false, wait: true, timeout: 5000 }).catch(() => undefined);
    };
    await producer.start();
    await producer.createQueue(PGBOSS_QUEUE);

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
    const workerConfig = await new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`pg-boss worker not ready within 30 s:\n${w.lastLines()}`)), 30_000);
      w.child.once('message', (m: { type?: string; config?: unknown }) => {
        clearTimeout(timer);
        if (m.type === 'ready') resolve(m.config);
        else reject(new Error(`pg-boss worker: unexpected message ${JSON.stringify(m)}`));
      });
      w.child.once('exit', (code) => reject(new Error(`pg-boss worker exited with ${code}:\n${w.lastLines()}`)));
    });
    result.notes.push(`pg-boss worker: ${JSON.stringify(workerConfig)}`);
    log(`pg-boss: worker ready ${JSON.stringify(workerConfig)}`);

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
    const boss = producer;
    const bulk = (phase: string, n: number) =>
      closedLoop(Math.ceil(n / cfg.batchSize), cfg.batchConcurrency, async (b) => {
        const jobs: PgBoss.JobInsert<DeliveryJob>[] = [];
        for (let i = b * cfg.batchSize; i < Math.min(n, (b + 1) * cfg.batchSize); i++) jobs.push({ name: PGBOSS_QUEUE, data: job(phase, i) });
        await boss.insert(jobs);
      });

    if (cfg.warmup > 0) {
      sampler.setPhase('warm-up');
      await measurePhase(receiver, phaseCfg('pgboss-warmup', cfg.warmup), limits, () => bulk('pgboss-warmup', cfg.warmup), late);
    }

    // (a) bulk insert → drained
    if (cfg.phases.has('a')) {
      sampler.setPhase('a');
      log(`pg-boss: (a) ${cfg.events} events, insert ${cfg.batchSize} per call, ${cfg.batchConcurrency} calls in flight`);
      const a = await measurePhase(receiver, phaseCfg('pgboss-bulk', cfg.events), limits, () => bulk('pgboss-bulk', cfg.events), late);
      result.batch = throughputOf(cfg.events, a);
      log(`pg-boss: (a) drained in ${a.drainSeconds.toFixed(2)} s = ${Math.round(result.batch.deliveredPerSec)}/s (${describe(a.stats)})`);
    }

    // (b) one insert per event, 32 concurrent producers
    if (cfg.phases.has('b')) {
      sampler.setPhase('b');
      log(`pg-boss: (b) ${cfg.singleEvents} events, one send per event, ${cfg.clients} producers`);
      const b = await measurePhase(
        receiver,
        phaseCfg('pgboss-single', cfg.singleEvents),
        limits,
        () =>
          closedLoop(cfg.singleEvents, cfg.clients, async (i) => {
            const id = await boss.send(PGBOSS_QUEUE, job('pgboss-single', i));
            if (!id) throw new Error('pg-boss send returned no id');
          }),
        late,
      );
      result.single = throughputOf(cfg.singleEvents, b);
      log(`pg-boss: (b) drained in ${b.drainSeconds.toFixed(2)} s = ${Math.round(result.single.deliveredPerSec)}/s (${describe(b.stats)})`);
    }

    // (c) steady rate
    if (cfg.phases.has('c')) {
      sampler.setPhase('c');
      const n = Math.round(cfg.pgbossRate * cfg.steadySeconds);
      log(`pg-boss: (c) ${cfg.pgbossRate}/s for ${cfg.steadySeconds} s (open loop, one send per event)`);
      let ol: Awaited<ReturnType<typeof openLoop>> | undefined;
      const steady = async () => {
        ol = await openLoop(cfg.pgbossRate, cfg.steadySeconds, async (i, scheduledUs) => {
          const id = await boss.send(PGBOSS_QUEUE, job('pgboss-steady', i, scheduledUs));
          if (!id) throw new Error('pg-boss send returned no id');
        });
      };
      const c = await measurePhase(receiver, phaseCfg('pgboss-steady', n, true), limits, steady, late);
      if (!ol) throw new Error('open loop did not run');
      result.latency = latencyOf(cfg.pgbossRate, ol, c);
      log(`pg-boss: (c) p50 ${result.latency.p50.toFixed(1)} ms, p99 ${result.latency.p99.toFixed(1)} ms (${describe(c.stats)})`);
    }

    // (d) the do-it-yourself fan-out: the producer writes one job per subscriber, in one insert
    if (cfg.fanout > 0 && cfg.phases.has('d')) {
      sampler.setPhase('d');
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
          await boss.insert(subscribers.map((s) => ({ name: PGBOSS_QUEUE, data: { event_id: eventId, webhook_id: s, created_at: createdAt, data } })));
          commitMs = (nowUs() - t0) / 1000;
        },
        late,
      );
      result.fanout = { webhooks: cfg.fanout, setupSeconds: 0, commitMs, deliverAllMs: d.drainSeconds * 1000, duplicates: d.stats.duplicateIds + d.stats.duplicateEvents, lateDuplicates: d.stats.lateDuplicates };
      log(`pg-boss: (d) commit ${commitMs.toFixed(0)} ms, all ${cfg.fanout} delivered in ${(d.drainSeconds * 1000).toFixed(0)} ms (${describe(d.stats)})`);
    }

    await tail(receiver, run, 'pgboss', late);
    result.late = late;
    result.workerHwmMb = memoryOf(w.pid)?.hwmMb;
    return result;
  } finally {
    await worker?.stop();
    await stopProducer();
    result.slowStatements = await sampler.stop();
    await dropDatabase(ctx.serverUrl, dbName).catch((err: unknown) => log(`could not drop ${dbName}: ${String(err)}`));
  }
}
