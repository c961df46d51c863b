/**
 * The API's writes to a webhook or a connection while the worker commits a poll page. The
 * page's transaction takes the stream's row, the connection's lease, then (inserting its
 * deliveries) a key-share lock on each webhook; a webhook's PATCH takes a no-key lock of the
 * webhook (which that key-share lock does not wait for), then its stream; a connection's
 * DELETE the connection, its webhooks (for update), then (cascading) its streams. Opposite
 * orders: PostgreSQL breaks the deadlock by rolling one side back. That side was a 500 for the
 * API's caller, or a failed run for the stream; now inTransaction runs it again, and both commit.
 */
import { inTransaction, newId, polling, webhooks } from '@hookpost/db';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, newWorkspace, startTestApi, type TestApi, type TestWorkspace } from './helpers.js';

let api: TestApi;
let ws: TestWorkspace;
let call: ReturnType<typeof client>;
beforeAll(async () => {
  api = await startTestApi();
  ws = await newWorkspace(api.db);
  call = client(api.url, ws.key);
});
afterAll(async () => api?.close());

interface Polled {
  connectionId: string;
  webhookId: string;
  streamId: string;
}

/** A virtual webhook on a connection this test's "worker" holds the lease of. */
async function polledWebhook(): Promise<Polled> {
  const conn = await call('POST', '/unified/connection', {
    integration_type: 'mockcrm',
    categories: ['crm'],
    permissions: [],
    auth: { api_url: 'http://127.0.0.1:9/source', access_token: 't' },
  });
  expect(conn.status).toBe(200);
  const hook = await call('POST', '/unified/webhook', {
    connection_id: conn.body.id,
    object_type: 'crm_contact',
    event: 'updated',
    hook_url: 'http://127.0.0.1:9/hook',
    webhook_type: 'virtual',
    interval: 60,
  });
  expect(hook.status).toBe(200);
  const row = await api.db.selectFrom('webhooks').select('stream_id').where('id', '=', hook.body.id).executeTakeFirstOrThrow();
  await sql`update connection_polls set leased_by = 'worker-a', lease_until = now() + interval '1 minute' where connection_id = ${conn.body.id}`.execute(api.db);
  return { connectionId: conn.body.id, webhookId: hook.body.id, streamId: row.stream_id! };
}

/**
 * One page commit as stream-run.ts makes it (inTransaction: the stream's row, the lease, then
 * the page and its delivery), with `request` sent once the stream and lease are held: it takes
 * its first row, then waits for the stream's, and the page then waits for its webhook.
 */
async function pageCommitDuring<T>(p: Polled, request: () => Promise<T>, workerDeadlockTimeout?: string): Promise<{ answer: T; tries: number }> {
  let answer: Promise<T> | undefined;
  let tries = 0;
  await inTransaction(api.db, async (trx) => {
    tries++;
    // The session that waits longest first checks for the deadlock first and is rolled back.
    if (workerDeadlockTimeout) await sql.raw(`set local deadlock_timeout = '${workerDeadlockTimeout}'`).execute(trx);
    await polling.lockStream(trx, p.streamId);
    expect(await polling.renewLease(trx, p.connectionId, 'worker-a', 60_000)).toBe(true);
    if (tries === 1) {
      answer = request();
      await waitingOnALock(trx);
    }
    await polling.commitPage(trx, {
      streamId: p.streamId,
      nextCursor: 'c2',
      recordsSeen: 1,
      changes: 1,
      maxUpdatedAt: null,
      records: [],
      deliveries: [{ id: newId(), workspace_id: ws.workspaceId, webhook_id: p.webhookId, payload: { type: 'record:updated', records: [] }, status: 'pending' }],
    });
  });
  return { answer: await answer!, tries };
}

/** Until another session waits for a row this transaction holds (the request reached it), 10 s at most. */
async function waitingOnALock(trx: Parameters<Parameters<typeof inTransaction>[1]>[0]): Promise<void> {
  for (const deadline = Date.now() + 10_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 10))) {
    const r = await sql<{ n: number }>`
      select count(*)::int as n from pg_stat_activity
      where datname = current_database() and pid <> pg_backend_pid() and wait_event_type = 'Lock' and pg_backend_pid() = any(pg_blocking_pids(pid))`.execute(trx);
    if ((r.rows[0]?.n ?? 0) > 0) return;
  }
}

const deadlocks = async () =>
  Number((await sql<{ n: string }>`select deadlocks as n from pg_stat_database where datname = current_database()`.execute(api.db)).rows[0]?.n);
const pagesCommitted = async (streamId: string) =>
  (await api.db.selectFrom('poll_streams').select('run_cursor').where('id', '=', streamId).executeTakeFirst())?.run_cursor ?? null;

describe('a write of the API while a poll page commits', () => {
  it('a webhook PATCH while a page commits: no deadlock now, both commit at their first try', async () => {
    // A PATCH locks its webhook with a no-key lock, which the page's key-share lock (inserting
    // a delivery) does not wait for: the page commits, then the PATCH takes the stream. Before,
    // with FOR UPDATE, the two took the rows in opposite orders and PostgreSQL rolled one back
    // (retried by inTransaction; both still committed, a deadlock_timeout later).
    const p = await polledWebhook();
    const before = await deadlocks();
    const { answer, tries } = await pageCommitDuring(p, () => call('PATCH', `/unified/webhook/${p.webhookId}`, { interval: 5 }));
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    expect(tries).toBe(1);
    expect((await call('GET', `/unified/webhook/${p.webhookId}`)).body.interval).toBe(5);
    expect(await pagesCommitted(p.streamId)).toBe('c2');
    expect(await api.db.selectFrom('deliveries').select('id').where('webhook_id', '=', p.webhookId).execute()).toHaveLength(1);
    expect(await deadlocks()).toBe(before);
  });

  it("an ingest group with an event for a webhook being paused does not wait for the pause (it holds the webhook's backlog)", async () => {
    // Before, the pause's FOR UPDATE held every ingest group with an event for the webhook (and,
    // through the commit slots, other workspaces' requests) until its backlog was all held.
    const hook = await call('POST', '/webhook', { target_url: 'http://127.0.0.1:9/pausing', event_types: ['pause:test'] });
    expect(hook.status).toBe(201);
    let ingested: { status: number; ms: number } | undefined;
    await inTransaction(api.db, async (trx) => {
      await webhooks.lockWebhook(trx, hook.body.id); // as PATCH /webhook/{id} does while it holds the backlog
      const started = Date.now();
      const r = await Promise.race([call('POST', '/v1/events', { type: 'pause:test', data: { n: 1 } }), new Promise<undefined>((done) => setTimeout(done, 5_000))]);
      ingested = r && { status: r.status, ms: Date.now() - started };
    });
    expect(ingested?.status).toBe(202);
    expect(ingested?.ms).toBeLessThan(5_000);
  });

  it('a connection DELETE: run again after the deadlock, it deletes the connection, its webhooks and streams (200)', async () => {
    const p = await polledWebhook();
    const before = await deadlocks();
    const { answer } = await pageCommitDuring(p, () => call('DELETE', `/unified/connection/${p.connectionId}`));
    await expect.poll(deadlocks, { timeout: 3000 }).toBeGreaterThan(before);
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    expect((await call('GET', `/unified/connection/${p.connectionId}`)).status).toBe(404);
    expect(await api.db.selectFrom('webhooks').select('id').where('id', '=', p.webhookId).execute()).toEqual([]);
    expect(await api.db.selectFrom('poll_streams').select('id').where('id', '=', p.streamId).execute()).toEqual([]);
  });
});

describe('two of the same request at once', () => {
  it('two rotations of a webhook secret: each answers a secret that signs (the current or the one before it)', async () => {
    // Before, both read the same secret first: one's answer was neither secret afterwards (2 in 30).
    const hook = await call('POST', '/webhook', { target_url: 'http://127.0.0.1:9/rotating' });
    for (let round = 0; round < 30; round++) {
      const [a, b] = await Promise.all([
        call('POST', `/v1/webhooks/${hook.body.id}/rotate-secret`, { overlap_seconds: 3600 }),
        call('POST', `/v1/webhooks/${hook.body.id}/rotate-secret`, { overlap_seconds: 3600 }),
      ]);
      expect([a.status, b.status]).toEqual([200, 200]);
      const now = (await call('GET', `/v1/webhooks/${hook.body.id}/secret`)).body;
      const signing = [now.secret, now.previous_secret];
      expect(signing).toContain(a.body.secret);
      expect(signing).toContain(b.body.secret);
      expect(a.body.secret).not.toBe(b.body.secret);
    }
  });

  it("two replays of a webhook's failed deliveries: each failed delivery is copied once (one webhook-id), not once per replay", async () => {
    const hook = await call('POST', '/webhook', { target_url: 'http://127.0.0.1:9/replayed' });
    const events = Array.from({ length: 200 }, (_, i) => ({ type: 'record:created', data: { n: i } }));
    expect((await call('POST', '/v1/events/batch', { events })).status).toBe(202);
    await api.db.updateTable('deliveries').set({ status: 'dead', attempts: 3 }).where('webhook_id', '=', hook.body.id).execute();
    const since = new Date(Date.now() - 60_000).toISOString();
    const answers = await Promise.all([1, 2].map(() => call('POST', `/v1/webhooks/${hook.body.id}/replay`, { since })));
    expect(answers.map((a) => a.status)).toEqual([202, 202]);
    expect(answers[0]!.body.count + answers[1]!.body.count).toBe(200);
    const copies = await sql<{ n: number }>`
      select count(*)::int as n from deliveries where webhook_id = ${hook.body.id} and replay_of is not null group by replay_of`.execute(api.db);
    expect(copies.rows).toHaveLength(200);
    expect(copies.rows.every((r) => r.n === 1)).toBe(true);
  });
});
