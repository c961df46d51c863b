/**
 * The worker's prepared statements keep the generic plan of their first execution (the
 * queue's sessions force generic plans, QUEUE_SESSION_SETTINGS), until an ANALYZE of a table
 * they read. On a fresh install that plan is made over a webhook or two and an empty queue,
 * where every index looks alike: a completion then read every delivery of its webhook to find
 * the few it completes, the target lookup every webhook, the claim's liveness check hundreds.
 * Sessions are replaced after SESSION_MAX_LIFETIME_S, and a new one plans against the tables'
 * current size (which the planner reads even from stale statistics).
 */
import { createDb, deliveries, newId, QUEUE_SESSION_SETTINGS, webhooks } from '@hookpost/db';
import { createPlainSetup, type TestDatabase } from '@hookpost/testkit';
import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Database } from '@hookpost/db';

let t: TestDatabase;
let scope: { workspaceId: string; environmentId: string };
let hook: string;
beforeAll(async () => {
  ({ t, scope, webhookId: hook } = await createPlainSetup('queue-plans'));
  // No ANALYZE behind the test's back: the plans stay as first made.
  await sql`alter table deliveries set (autovacuum_enabled = off)`.execute(t.db);
  await sql`alter table webhooks set (autovacuum_enabled = off)`.execute(t.db);
});
afterAll(async () => t?.drop());

/** Index entries read in this transaction, by index name. */
async function indexReads(db: Kysely<Database>): Promise<Record<string, number>> {
  const r = await sql<{ name: string; n: string }>`
    select indexrelid::regclass::text as name, pg_stat_get_xact_tuples_returned(indexrelid)::text as n
      from pg_index where indrelid in ('deliveries'::regclass, 'webhooks'::regclass)`.execute(db);
  return Object.fromEntries(r.rows.map((x) => [x.name, Number(x.n)]));
}

async function claimAndComplete(session: Kysely<Database>, workerId: string): Promise<Record<string, Record<string, number>>> {
  const id = newId();
  await deliveries.insertDelivery(t.db, { id, workspaceId: scope.workspaceId, webhookId: hook, kind: 'event', payload: { n: 1 } });
  return session.transaction().execute(async (trx) => {
    const reads: Record<string, Record<string, number>> = {};
    const measured = async (step: string, fn: () => Promise<unknown>) => {
      const before = await indexReads(trx);
      await fn();
      const after = await indexReads(trx);
      reads[step] = Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - (before[k] ?? 0)]).filter(([, v]) => Number(v) > 0));
    };
    await measured('claim', async () => {
      const { deliveries: claimed } = await deliveries.claimDue(trx, { workerId, limit: 10, perWebhook: 10, leaseMs: 60_000 });
      expect(claimed.map((d) => d.id)).toEqual([id]);
    });
    await measured('targets', () => webhooks.getWebhooksForDelivery(trx, [hook]));
    await measured('completion', () =>
      deliveries.completeBatch(trx, workerId, [{ id, attempt: 1, status: 'succeeded', nextAttemptAt: null, statusCode: 204, error: null }], []),
    );
    return reads;
  });
}

it('plans made on a fresh install walk what has grown until the session is replaced; a new session plans against the tables as they are', { timeout: 60_000 }, async () => {
  // The session lives 15 s here (SESSION_MAX_LIFETIME_S, 120 s, in the services). Before, a
  // session lived for ever: without an ANALYZE its plans stayed as first made.
  const session = createDb({ connectionString: t.url, poolMax: 1, applicationName: 'hookpost-worker', settings: QUEUE_SESSION_SETTINGS, maxLifetimeSeconds: 15 });
  try {
    const workerId = `worker-${newId()}`;
    // As autovacuum does on a young install: statistics of one webhook and an empty queue.
    await sql`analyze`.execute(t.db);
    const pid = async () => (await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(session)).rows[0]?.pid;
    const first = await pid();
    await claimAndComplete(session, workerId);
    await sql`insert into webhooks (id, workspace_id, environment_id, origin, event_types, hook_url, filters, subscriptions, secret_encrypted)
              select hookpost_uuid_v7(), ${scope.workspaceId}, ${scope.environmentId}, 'truto', '{}', 'http://127.0.0.1:9/other-' || g, '{}', '{}', '\\x00'
              from generate_series(1, 1000) g`.execute(t.db);
    await sql`insert into deliveries (id, workspace_id, webhook_id, kind, payload, status, next_attempt_at, finished_at)
              select hookpost_uuid_v7(), ${scope.workspaceId}, ${hook}, 'test', '{}', 'succeeded', now() - interval '2 hours', now()
              from generate_series(1, 20000) g`.execute(t.db);
    // The plans of the first session: they walk every delivery of the webhook, every webhook.
    expect(await pid()).toBe(first);
    const stale = await claimAndComplete(session, workerId);
    expect(stale.completion?.deliveries_webhook).toBeGreaterThan(20_000);
    expect(stale.targets?.webhooks_connection).toBeGreaterThan(1_000);
    // Past its lifetime the pool replaces it (when idle): the new one's plans read by key.
    for (let waited = 0; (await pid()) === first && waited < 30_000; waited += 250) await new Promise((r) => setTimeout(r, 250));
    expect(await pid()).not.toBe(first);
    const fresh = await claimAndComplete(session, workerId);
    for (const [step, byIndex] of Object.entries(fresh)) {
      for (const [index, n] of Object.entries(byIndex)) expect({ step, index, small: n <= 10 }).toEqual({ step, index, small: true });
    }
  } finally {
    await session.destroy();
  }
});
