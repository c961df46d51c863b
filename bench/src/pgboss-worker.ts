/**
 * The baseline: a straightforward pg-boss delivery worker, in its own process (so its
 * RSS is measured like Hookpost's worker). Each job is one delivery: render the
 * Truto-style envelope, sign it (Standard Webhooks), POST it over a keep-alive undici
 * Pool, complete the job. Tuned the usual way: several `work()` loops, each fetching a
 * batch and sending the whole batch concurrently, sharing one connection pool.
 *
 * The driver tells it over IPC when to work (`{type: 'work', queue}`) and when to stop
 * polling (`queue: null`, while the other system is measured).
 */
import { signStandardHeaders } from '@hookpost/contract/signing';
import PgBoss from 'pg-boss';
import { Pool } from 'undici';
import { envelope, envInt, envNum, type DeliveryJob } from './common.js';

const databaseUrl = process.env.BOSS_DATABASE_URL as string;
const receiverUrl = process.env.RECEIVER_URL as string;
const secret = process.env.BOSS_SECRET as string;
const webhookId = process.env.BOSS_WEBHOOK_ID as string;
const workers = envInt('BOSS_WORKERS', 4, 1, 64);
const batchSize = envInt('BOSS_BATCH', 100, 1, 5000);
const pollingIntervalSeconds = envNum('BOSS_POLL_S', 0.5, 0.5, 60);
const connections = envInt('BOSS_CONNECTIONS', 128, 1, 1024);
const poolMax = envInt('BOSS_POOL_MAX', workers * 2 + 4, 2, 100);

const pool = new Pool(receiverUrl, { connections, pipelining: 1, keepAliveTimeout: 30_000 });
const boss = new PgBoss({ connectionString: databaseUrl, max: poolMax, schedule: false, application_name: 'bench-pgboss-worker' });
let errors = 0;
boss.on('error', (err) => {
  errors++;
  if (errors <= 5) process.stderr.write(`pg-boss worker error: ${String(err?.message ?? err)}\n`);
});

async function deliver(job: PgBoss.Job<DeliveryJob>): Promise<void> {
  const body = envelope(job.data.event_id, job.data.webhook_id ?? webhookId, job.data.data, job.data.created_at);
  const headers = { 'content-type': 'application/json', ...signStandardHeaders([secret], job.id, Math.floor(Date.now() / 1000), body) };
  const res = await pool.request({ path: '/h', method: 'POST', headers, body, headersTimeout: 15_000, bodyTimeout: 15_000 });
  await res.body.dump();
  if (res.statusCode < 200 || res.statusCode >= 300) throw new Error(`receiver answered ${res.statusCode}`);
}

let working: string | null = null;

/**
 * Stops the work loops of the current queue (jobs in hand finish) and starts them on
 * `queue`, spread over one polling interval: loops started together would all poll at
 * once, and an idle queue would be looked at every 0.5 s instead of every 0.5 s / workers.
 */
async function workOn(queue: string | null): Promise<void> {
  if (working) await boss.offWork(working);
  working = queue;
  if (!queue) return;
  for (let i = 0; i < workers; i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, (pollingIntervalSeconds * 1000) / workers));
    await boss.work<DeliveryJob>(queue, { batchSize, pollingIntervalSeconds }, async (jobs) => {
      await Promise.all(jobs.map(deliver));
    });
  }
}

await boss.start();
process.on('message', (m: { type?: string; req?: number; queue?: string | null }) => {
  if (m.type !== 'work') return;
  workOn(m.queue ?? null).then(
    () => process.send?.({ type: 'ok', req: m.req }),
    (err: unknown) => process.send?.({ type: 'error', req: m.req, message: String((err as Error)?.message ?? err) }),
  );
});
process.send?.({ type: 'ready', config: { workers, batchSize, pollingIntervalSeconds, connections, poolMax } });

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await boss.stop({ graceful: true, wait: true, timeout: 10_000 }).catch(() => undefined);
  await pool.close().catch(() => undefined);
  process.exit(0);
};
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());
process.on('disconnect', () => void stop());
