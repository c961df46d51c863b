/**
 * Claims and their leases, where a send could happen twice or a result land on the wrong
 * claim: a claim that waited (for a lock) until its lease was over; a late completion or
 * release of an earlier claim of the same delivery (its lease ran out, the reaper put it
 * back, the same worker claimed it again); and a webhook whose secret cannot be decrypted,
 * which used to hand every claimed delivery back, so that nothing was sent to anyone.
 */
import { createDb, deliveries, newId, QUEUE_SESSION_SETTINGS, type ClaimedDelivery, type Database } from '@hookpost/db';
import { createPlainSetup, insertPlainWebhook, type TestDatabase } from '@hookpost/testkit';
import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CompletionWriter } from '../src/delivery/completions.js';
import { createLogger } from '@hookpost/runtime';
import { receivedTwice, resentWithoutTimeout, startStack, type Stack } from './stack.js';

let stack: Stack;
let db: Kysely<Database>;
beforeAll(async () => {
  // A send may take 1 s; the lease is the shortest the config allows for it (2 × timeout).
  stack = await startStack({ env: { DELIVERY_TIMEOUT_MS: '1000', DELIVERY_LEASE_MS: '2000' } });
  db = stack.database.db;
});
afterAll(async () => stack?.close());

const at = (path: string) => () => stack.receiver.deliveries().filter((d) => d.path === path);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor<T>(read: () => Promise<T> | T, done: (v: T) => boolean, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await read();
    if (done(v) || Date.now() > deadline) return v;
    await sleep(50);
  }
}

/** Entries of deliveries_due this session's transaction has read (counted until its statistics are flushed). */
const dueIndexReads = async (db: Kysely<Database>) =>
  Number((await sql<{ n: string }>`select pg_stat_get_xact_tuples_returned('deliveries_due'::regclass) as n`.execute(db)).rows[0]?.n);

const scopeOf = async (webhookId: string) => {
  const w = await db.selectFrom('webhooks').select(['workspace_id', 'environment_id']).where('id', '=', webhookId).executeTakeFirstOrThrow();
  return { workspaceId: w.workspace_id, environmentId: w.environment_id };
};

describe('a claim whose lease is over by the time its rows arrive', () => {
  it('is handed back, not sent: one send, although the claim waited 2.5 s for a lock (the lease is 2 s)', async () => {
    const hook = await stack.trutoWebhook('/lease/slow');
    stack.receiver.setBehaviour('/lease/slow', { latency_ms: 800 });
    const scope = await scopeOf(hook.id);
    const id = newId();
    // A migration's lock on events (0005 rewrote every row under one): the worker's claim,
    // which reads events, waits for it with its lease already running.
    await db.transaction().execute(async (trx) => {
      await sql`lock table events in access exclusive mode`.execute(trx);
      await deliveries.insertDelivery(db, { id, workspaceId: scope.workspaceId, webhookId: hook.id, kind: 'test', payload: { n: 1 } });
      await sleep(2_500);
    });
    const row = await waitFor(
      () => deliveries.getDelivery(db, scope, id),
      (r) => r?.status === 'succeeded',
    );
    expect(row?.status).toBe('succeeded');
    // Long enough for a second, overlapping send (the reaper runs every second) to arrive.
    await sleep(2_000);
    // One send, but for one retried after a timeout (by design; a starved machine answers late).
    const twice = receivedTwice(at('/lease/slow')().map((d) => d.webhook_id));
    expect(await resentWithoutTimeout(stack, twice)).toEqual([]);
    expect(new Set(at('/lease/slow')().map((d) => d.webhook_id))).toEqual(new Set([id]));
  }, 30_000);
});

describe('claims by hand: a late result of an earlier claim; a last attempt that never finishes', () => {
  // A database of its own, with no worker on it: the claims here are the test's.
  let t: TestDatabase;
  let scope: { workspaceId: string; environmentId: string };
  let webhookId: string;
  beforeAll(async () => {
    ({ t, scope, webhookId } = await createPlainSetup('stale-claims', 'http://127.0.0.1:9/stale'));
  });
  afterAll(async () => t?.drop());

  it('changes neither the delivery nor its release; both attempts are logged; the later claim decides', async () => {
    const id = newId();
    await deliveries.insertDelivery(t.db, { id, workspaceId: scope.workspaceId, webhookId, kind: 'test', payload: { n: 2 } });
    const workerId = `worker-${newId()}`;
    // Claim 1 (attempt 1); its lease runs out, the reaper puts it back, the same worker claims it again (attempt 2).
    const [first] = (await deliveries.claimDue(t.db, { workerId, limit: 10, perWebhook: 10, leaseMs: 1 })).deliveries;
    expect(first).toMatchObject({ id, attempts: 1 });
    await sleep(5);
    expect(await deliveries.reclaimExpiredLeases(t.db, 20)).toBe(1);
    const [second] = (await deliveries.claimDue(t.db, { workerId, limit: 10, perWebhook: 10, leaseMs: 60_000 })).deliveries;
    expect(second).toMatchObject({ id, attempts: 2 });

    // Claim 1's release and its failure (retry in an hour) arrive late: nothing changes.
    await deliveries.releaseClaims(t.db, workerId, [first as ClaimedDelivery]);
    expect(await deliveries.getDelivery(t.db, scope, id)).toMatchObject({ status: 'delivering', attempts: 2, leased_by: workerId });
    const stale = {
      outcome: 'failure' as const,
      completion: { id, attempt: 1, status: 'pending' as const, nextAttemptAt: new Date(Date.now() + 3_600_000), statusCode: 500, error: 'HTTP 500' },
      attempt: { deliveryId: id, webhookId, attempt: 1, startedAt: new Date(), durationMs: 5, statusCode: 500, outcome: 'http_500', error: 'HTTP 500', responseSnippet: null, requestHeaders: {} },
    };
    const writer = new CompletionWriter(t.db, workerId, { failureThreshold: 1, pauseAfterSeconds: 3600 }, createLogger('test', 'silent'), { onStopped: () => undefined, onRetryAt: () => undefined }, 60_000);
    writer.add(stale);
    await writer.flush();
    expect(await deliveries.getDelivery(t.db, scope, id)).toMatchObject({ status: 'delivering', attempts: 2, leased_by: workerId });
    // Its failure does not count against the webhook either (threshold 1 would mark it unhealthy).
    const health = await t.db.selectFrom('webhooks').select(['consecutive_failures', 'is_healthy']).where('id', '=', webhookId).executeTakeFirstOrThrow();
    expect(health).toEqual({ consecutive_failures: 0, is_healthy: true });

    // Claim 2's success ends the delivery.
    writer.add({
      outcome: 'success',
      completion: { id, attempt: 2, status: 'succeeded', nextAttemptAt: null, statusCode: 204, error: null },
      attempt: { ...stale.attempt, attempt: 2, statusCode: 204, outcome: 'success', error: null },
    });
    await writer.flush();
    expect(await deliveries.getDelivery(t.db, scope, id)).toMatchObject({ status: 'succeeded', attempts: 2 });
    const logged = await deliveries.listAttempts(t.db, id);
    expect(logged.map((a) => [a.attempt, a.outcome])).toEqual([
      [1, 'http_500'],
      [2, 'success'],
    ]);
  });

  // A delivery whose last attempt never finishes (its worker dies sending it).
  it('comes back after its lease, its last attempt too, and is dead once it has lost LOST_CLAIMS_ALLOWED more', async () => {
    const id = newId();
    await deliveries.insertDelivery(t.db, { id, workspaceId: scope.workspaceId, webhookId, kind: 'test', payload: { n: 3 } });
    const maxAttempts = 2;
    const limit = maxAttempts + deliveries.LOST_CLAIMS_ALLOWED;
    for (let attempt = 1; attempt <= limit; attempt++) {
      const { deliveries: claimed } = await deliveries.claimDue(t.db, { workerId: `worker-${newId()}`, limit: 10, perWebhook: 10, leaseMs: 1 });
      expect(claimed.map((d) => [d.id, d.attempts])).toEqual([[id, attempt]]);
      await sleep(5);
      expect(await deliveries.reclaimExpiredLeases(t.db, maxAttempts)).toBe(1);
      const row = await deliveries.getDelivery(t.db, scope, id);
      expect(row?.status).toBe(attempt < limit ? 'pending' : 'dead');
    }
    const row = await deliveries.getDelivery(t.db, scope, id);
    expect(row).toMatchObject({ status: 'dead', attempts: limit, leased_by: null });
    expect(row?.finished_at).not.toBeNull();
    expect(row?.last_error).toMatch(/^lease_expired/);
  });
});

describe('claims leaving full endpoints out, and releases that postpone', () => {
  // A database of its own, with no worker on it.
  let t: TestDatabase;
  let scope: { workspaceId: string; environmentId: string };
  let full: string;
  let other: string;
  beforeAll(async () => {
    ({ t, scope, webhookId: full } = await createPlainSetup('exclusion', 'http://127.0.0.1:9/full'));
    other = await insertPlainWebhook(t.db, scope, 'http://127.0.0.1:9/other');
  });
  afterAll(async () => t?.drop());

  it('a claim leaving webhooks out takes only the others, and the next due time leaves them out too; a postponed release is not due again before its time', async () => {
    const insert = (webhookId: string) => deliveries.insertDelivery(t.db, { id: newId(), workspaceId: scope.workspaceId, webhookId, kind: 'test', payload: {} });
    for (let i = 0; i < 3; i++) await insert(full);
    await insert(other);
    const workerId = `worker-${newId()}`;
    const claim = (excludeWebhooks: string[]) => deliveries.claimDue(t.db, { workerId, limit: 10, perWebhook: 10, leaseMs: 60_000, excludeWebhooks });
    expect(await deliveries.nextDueAt(t.db, [full, other])).toBeNull();
    const first = await claim([full]);
    expect(first.deliveries.map((d) => d.webhook_id)).toEqual([other]);
    expect(await deliveries.nextDueAt(t.db, [full])).toBeNull();
    expect(await deliveries.nextDueAt(t.db, [])).not.toBeNull();

    const mine = await claim([]);
    expect(mine.deliveries).toHaveLength(3);
    const before = Date.now();
    await deliveries.releaseClaims(t.db, workerId, mine.deliveries.map((d) => ({ id: d.id, attempts: d.attempts, postponeMs: 1_500 })));
    expect((await claim([])).deliveries).toEqual([]); // not due yet: no attempt spent either
    const rows = await t.db.selectFrom('deliveries').select(['status', 'attempts']).where('webhook_id', '=', full).execute();
    expect(rows).toEqual(Array.from({ length: 3 }, () => ({ status: 'pending', attempts: 0 })));
    const due = await deliveries.nextDueAt(t.db, []);
    expect(due?.getTime()).toBeGreaterThanOrEqual(before + 1_000);
    await sleep(Math.max(0, (due?.getTime() ?? 0) - Date.now()) + 50);
    expect((await claim([])).deliveries).toHaveLength(3);
  });

  it('past 20,000 due rows of a webhook left out, a claim reads a bounded part of the due index and still takes everyone else\'s earliest rows, at most perWebhook each', async () => {
    const slow = await insertPlainWebhook(t.db, scope, 'http://127.0.0.1:9/slow-backlog');
    const a = await insertPlainWebhook(t.db, scope, 'http://127.0.0.1:9/a');
    const b = await insertPlainWebhook(t.db, scope, 'http://127.0.0.1:9/b');
    const backlog = (webhookId: string, n: number, from: string) => sql`
      insert into deliveries (id, workspace_id, webhook_id, kind, payload, status, next_attempt_at)
      select hookpost_uuid_v7(), ${scope.workspaceId}, ${webhookId}, 'test', '{}', 'pending', now() - ${from}::interval + g * interval '1 ms'
      from generate_series(1, ${n}) g`.execute(t.db);
    await backlog(slow, 20_000, '1 hour'); // in front of everyone else's
    await backlog(a, 30, '10 minutes');
    await backlog(b, 5, '5 minutes');
    await sql`analyze deliveries`.execute(t.db);
    const workerId = `worker-${newId()}`;
    /** The claim, rolled back, with how many entries of deliveries_due it read. */
    const claimCounting = (excludeWebhooks: string[]) =>
      t.db
        .transaction()
        .execute(async (trx) => {
          // Counted by the session until its statistics are flushed: the difference is the claim's.
          const read = () => dueIndexReads(trx);
          const before = await read();
          const c = await deliveries.claimDue(trx, { workerId, limit: 10, perWebhook: 6, leaseMs: 60_000, excludeWebhooks });
          throw Object.assign(new Error('rollback'), { result: { claimed: c.deliveries, dueIndexRead: (await read()) - before } });
        })
        .catch((err: { result?: { claimed: ClaimedDelivery[]; dueIndexRead: number } }) => {
          if (!err.result) throw err;
          return err.result;
        });
    const { claimed, dueIndexRead } = await claimCounting([slow]);
    // a's and b's 5 earliest each: round robin over the webhooks, each in due order. The rows
    // come back in no particular order (PostgreSQL 17 returned them interleaved).
    expect(claimed.map((d) => d.webhook_id).sort()).toEqual([...Array<string>(5).fill(a), ...Array<string>(5).fill(b)].sort());
    const ofA = claimed.filter((d) => d.webhook_id === a).map((d) => d.id).sort();
    const aEarliest = await sql<{ id: string }>`select id from deliveries where webhook_id = ${a} order by next_attempt_at limit 5`.execute(t.db);
    expect(ofA).toEqual(aEarliest.rows.map((r) => r.id).sort());
    // The read of the due index stops at the claim's window (4 × limit) + FRONT_SLACK (4,096);
    // before, it read the 20,000 rows of the webhook left out.
    expect(dueIndexRead).toBeLessThanOrEqual(40 + 4096);
    // Leaving out a webhook whose rows are not in front: the read stops at the window (on
    // PostgreSQL 15 and 16 an ORDER BY over the front made it read all 4,136).
    // Slow's rows fill the front past its share: a's are taken too, from a's own range (the
    // look past a dominating webhook, fairnessCtes), b's not (left out).
    const few = await claimCounting([b]);
    expect(few.claimed.map((d) => d.webhook_id).sort()).toEqual([...Array<string>(5).fill(slow), ...Array<string>(5).fill(a)].sort());
    expect(few.dueIndexRead).toBeLessThanOrEqual(41);
    // Nothing left out: the front as before, and the others' earliest rows past it.
    const all = await claimCounting([]);
    const counts = (c: ClaimedDelivery[]) => [slow, a, b].map((w) => c.filter((d) => d.webhook_id === w).length);
    expect(counts(all.claimed)).toEqual([4, 3, 3]);
    expect(all.dueIndexRead).toBeLessThanOrEqual(40);
    // The next due time past them: a's earliest (already due), and null with a and b left out too.
    const next = await deliveries.nextDueAt(t.db, [slow]);
    expect(next).not.toBeNull();
    expect(await deliveries.nextDueAt(t.db, [slow, a, b])).toBeNull();
  });
});

describe('stepping past left-out webhooks, across many webhooks', () => {
  let t: TestDatabase;
  let scope: { workspaceId: string; environmentId: string };
  let slow: string;
  beforeAll(async () => {
    ({ t, scope, webhookId: slow } = await createPlainSetup('stepping', 'http://127.0.0.1:9/slow'));
  });
  afterAll(async () => t?.drop());

  it('a claim steps through at most 1,000 webhooks; the next goes on from there and reaches the rest (the earliest due among them)', async () => {
    // 1,100 webhooks with one due delivery each, ids in creation order; the last 100 hold the
    // earliest due rows, after the slow webhook's 5,000 (which fill the front of the due index).
    const hooks = await sql<{ id: string }>`
      insert into webhooks (id, workspace_id, environment_id, origin, hook_url, secret_encrypted)
      select hookpost_uuid_v7(), ${scope.workspaceId}, ${scope.environmentId}, 'truto', 'http://127.0.0.1:9/many', '\\x00' from generate_series(1, 1100)
      returning id`.execute(t.db);
    const ids = hooks.rows.map((r) => r.id);
    // Stepping goes in id order, the slow webhook among them: beyond the first 1,000 are late.
    const all = [...ids, slow].sort();
    const late = new Set(all.slice(1000).filter((id) => id !== slow));
    await sql`insert into deliveries (id, workspace_id, webhook_id, kind, payload, status, next_attempt_at)
              select hookpost_uuid_v7(), ${scope.workspaceId}, ${slow}, 'test', '{}', 'pending', now() - interval '3 hours' + g * interval '1 ms'
              from generate_series(1, 5000) g`.execute(t.db);
    await sql`insert into deliveries (id, workspace_id, webhook_id, kind, payload, status, next_attempt_at)
              select hookpost_uuid_v7(), ${scope.workspaceId}, w, 'test', '{}', 'pending',
                     case when w = any(${[...late]}::uuid[]) then now() - interval '2 hours' else now() - interval '30 minutes' end
              from unnest(${ids}::uuid[]) w`.execute(t.db);
    await sql`analyze deliveries`.execute(t.db);
    const workerId = `worker-${newId()}`;
    const claim = (stepAfter: string | null) => deliveries.claimDue(t.db, { workerId, limit: 10, perWebhook: 1, leaseMs: 60_000, excludeWebhooks: [slow], stepAfter });
    // The next due time past the front looks at 100 webhooks, not all 1,100 (before, every
    // webhook with pending deliveries each time the worker went idle): due already here.
    const nextDue = await t.db.transaction().execute(async (trx) => {
      const reads = () => sql<{ n: string }>`select pg_stat_get_xact_tuples_returned('deliveries_webhook_due'::regclass) as n`.execute(trx).then((r) => Number(r.rows[0]?.n));
      const before = await reads();
      const at = await deliveries.nextDueAt(trx, [slow]);
      return { at, read: (await reads()) - before };
    });
    expect(nextDue.at?.getTime()).toBeLessThanOrEqual(Date.now());
    expect(nextDue.read).toBeLessThanOrEqual(110);

    const first = await claim(null);
    expect(first.stepped).toBe(true);
    expect(first.deliveries).toHaveLength(10);
    // It stopped at its 1,000th webhook: none of the late ones seen.
    expect(first.deliveries.some((d) => late.has(d.webhook_id))).toBe(false);
    expect(first.stepAfter).toBe(all[999]);
    const second = await claim(first.stepAfter);
    expect(second.stepped).toBe(true);
    expect(second.stepAfter).toBeNull(); // reached the last webhook
    expect(second.deliveries.map((d) => d.webhook_id).every((w) => late.has(w))).toBe(true);
    expect(second.deliveries).toHaveLength(Math.min(10, late.size));
    // Nothing left out: no stepping past left-out webhooks, no resume point for it; the
    // slow webhook's one row, and (its rows filling the front) nine of the others'.
    const plain = await deliveries.claimDue(t.db, { workerId, limit: 10, perWebhook: 1, leaseMs: 60_000 });
    expect(plain).toMatchObject({ stepped: false, stepAfter: null });
    expect(plain.deliveries.filter((d) => d.webhook_id === slow)).toHaveLength(1);
    expect(plain.deliveries).toHaveLength(10);
  });
});

describe('a claim behind one webhook\'s backlog (a fast endpoint, never left out)', () => {
  let t: TestDatabase;
  let scope: { workspaceId: string; environmentId: string };
  let busy: string;
  beforeAll(async () => {
    ({ t, scope, webhookId: busy } = await createPlainSetup('fair-claims', 'http://127.0.0.1:9/busy'));
  });
  afterAll(async () => t?.drop());

  it('takes the other webhooks\' due rows too, 100 webhooks a claim, the next claim going on from there', async () => {
    // Before, the claim read the first 4 × limit due rows, all of the busy webhook, and took
    // its share of them: the others were seen only once most of the backlog had been sent.
    const hooks = await sql<{ id: string }>`
      insert into webhooks (id, workspace_id, environment_id, origin, hook_url, secret_encrypted)
      select hookpost_uuid_v7(), ${scope.workspaceId}, ${scope.environmentId}, 'truto', 'http://127.0.0.1:9/other', '\\x00' from generate_series(1, 150)
      returning id`.execute(t.db);
    const others = hooks.rows.map((r) => r.id);
    await sql`insert into deliveries (id, workspace_id, webhook_id, kind, payload, status, next_attempt_at)
              select hookpost_uuid_v7(), ${scope.workspaceId}, ${busy}, 'test', '{}', 'pending', now() - interval '3 hours' + g * interval '1 ms'
              from generate_series(1, 5000) g`.execute(t.db);
    await sql`insert into deliveries (id, workspace_id, webhook_id, kind, payload, status, next_attempt_at)
              select hookpost_uuid_v7(), ${scope.workspaceId}, w, 'test', '{}', 'pending', now() - interval '1 hour'
              from unnest(${others}::uuid[]) w`.execute(t.db);
    await sql`analyze deliveries`.execute(t.db);
    const workerId = `worker-${newId()}`;
    const claim = (fairAfter: string | null) => deliveries.claimDue(t.db, { workerId, limit: 500, perWebhook: 256, leaseMs: 60_000, fairAfter });
    const first = await claim(null);
    const seen = (c: { deliveries: ClaimedDelivery[] }) => new Set(c.deliveries.map((d) => d.webhook_id).filter((w) => w !== busy));
    expect(first.deliveries.filter((d) => d.webhook_id === busy)).toHaveLength(256);
    // 100 steps, the busy webhook one of them.
    expect(seen(first).size).toBeGreaterThanOrEqual(99);
    expect(first.fairAfter).not.toBeNull();
    const second = await claim(first.fairAfter);
    expect(new Set([...seen(first), ...seen(second)])).toEqual(new Set(others));
    expect(second.fairAfter).toBeNull(); // reached the last webhook
    // With no backlog in front, no look past it: the resume point is kept as it was.
    await sql`delete from deliveries where webhook_id = ${busy} and status = 'pending'`.execute(t.db);
    const calm = await claim('00000000-0000-0000-0000-000000000001');
    expect(calm).toMatchObject({ fairAfter: '00000000-0000-0000-0000-000000000001', deliveries: [] });
  });
});

describe('a claim with little room behind one webhook\'s backlog', () => {
  let t: TestDatabase;
  let scope: { workspaceId: string; environmentId: string };
  let busy: string;
  beforeAll(async () => {
    ({ t, scope, webhookId: busy } = await createPlainSetup('fair-small-claims', 'http://127.0.0.1:9/busy'));
  });
  afterAll(async () => t?.drop());

  it('still looks past the backlog when its share is larger than the claim (the claim takes 10, the share is 256)', async () => {
    // Before, "dominated" compared the backlog's rows in the front (4 × 10) with its share
    // (256) only: never more, no look past it, and the other webhook's row waited for the
    // whole backlog (8,000 of 8,000 sent first in a loaded test run).
    const other = await insertPlainWebhook(t.db, scope, 'http://127.0.0.1:9/other-small');
    await sql`insert into deliveries (id, workspace_id, webhook_id, kind, payload, status, next_attempt_at)
              select hookpost_uuid_v7(), ${scope.workspaceId}, ${busy}, 'test', '{}', 'pending', now() - interval '3 hours' + g * interval '1 ms'
              from generate_series(1, 2000) g`.execute(t.db);
    await deliveries.insertDelivery(t.db, { id: newId(), workspaceId: scope.workspaceId, webhookId: other, kind: 'test', payload: {} });
    const claimed = await deliveries.claimDue(t.db, { workerId: `worker-${newId()}`, limit: 10, perWebhook: 256, leaseMs: 60_000 });
    expect(claimed.deliveries).toHaveLength(10);
    expect(claimed.deliveries.filter((d) => d.webhook_id === other)).toHaveLength(1);
  });
});

describe('the claim\'s plan, made while the queue was empty', () => {
  let t: TestDatabase;
  let scope: { workspaceId: string; environmentId: string };
  let slow: string;
  beforeAll(async () => {
    ({ t, scope, webhookId: slow } = await createPlainSetup('empty-plans', 'http://127.0.0.1:9/slow-later'));
  });
  afterAll(async () => t?.drop());

  it('still steps from webhook to webhook in deliveries_webhook_due once a backlog has come (no read of every pending row per step)', async () => {
    // Seen in the bench on PostgreSQL 17: the step's generic plan read deliveries_due and sorted
    // every pending row, at every step.
    // One session, as the worker's: its generic plans are made at the first claim, here on an
    // analyzed table of sent deliveries with none pending (as after a drain: the bench's state
    // at each phase's start), and kept while a backlog grows (until the next ANALYZE).
    const session = createDb({ connectionString: t.url, poolMax: 1, applicationName: 'hookpost-worker', settings: QUEUE_SESSION_SETTINGS });
    try {
      await sql`insert into deliveries (id, workspace_id, webhook_id, kind, payload, status, next_attempt_at, finished_at)
                select hookpost_uuid_v7(), ${scope.workspaceId}, ${slow}, 'test', '{}', 'succeeded', now() - interval '2 hours', now()
                from generate_series(1, 50000) g`.execute(t.db);
      await sql`analyze deliveries`.execute(session);
      const workerId = `worker-${newId()}`;
      const claim = () => deliveries.claimDue(session, { workerId, limit: 10, perWebhook: 6, leaseMs: 60_000, excludeWebhooks: [slow] });
      for (let i = 0; i < 3; i++) expect((await claim()).deliveries).toEqual([]);
      const other = await insertPlainWebhook(t.db, scope, 'http://127.0.0.1:9/other-later');
      await sql`insert into deliveries (id, workspace_id, webhook_id, kind, payload, status, next_attempt_at)
                select hookpost_uuid_v7(), ${scope.workspaceId}, ${slow}, 'test', '{}', 'pending', now() - interval '1 hour' + g * interval '1 ms'
                from generate_series(1, 20000) g`.execute(t.db);
      await sql`insert into deliveries (id, workspace_id, webhook_id, kind, payload, status, next_attempt_at)
                select hookpost_uuid_v7(), ${scope.workspaceId}, ${other}, 'test', '{}', 'pending', now() - interval '1 minute' from generate_series(1, 3)`.execute(t.db);
      const counted = await session.transaction().execute(async (trx) => {
        const before = await dueIndexReads(trx);
        const c = await deliveries.claimDue(trx, { workerId, limit: 10, perWebhook: 6, leaseMs: 60_000, excludeWebhooks: [slow] });
        const after = await dueIndexReads(trx);
        return { claimed: c.deliveries.map((d) => d.webhook_id), dueIndexRead: after - before };
      });
      expect(counted.claimed).toEqual([other, other, other]);
      // The front (window + FRONT_SLACK) only. Before migration 0014's functions, inlined,
      // the steps each read every pending row (84,148 entries here), and the read of the other
      // webhook's own rows walked the due index past the backlog (20,000 more).
      expect(counted.dueIndexRead).toBeLessThanOrEqual(40 + 4096);
    } finally {
      await session.destroy();
    }
  });
});

describe('an initial sync\'s last page, claimed: what it waits for (deliveries.earlierPagesWait)', () => {
  let t: TestDatabase;
  let scope: { workspaceId: string; environmentId: string };
  let hook: string;
  beforeAll(async () => {
    ({ t, scope, webhookId: hook } = await createPlainSetup('last-page', 'http://127.0.0.1:9/pages'));
  });
  afterAll(async () => t?.drop());

  const page = async (o: { status: string; attempts: number; createdAgo: string; dueIn?: string }) => {
    const id = newId();
    await sql`insert into deliveries (id, workspace_id, webhook_id, kind, payload, status, attempts, created_at, next_attempt_at)
              values (${id}, ${scope.workspaceId}, ${hook}, 'virtual', '{}', ${o.status}, ${o.attempts}, now() - ${o.createdAgo}::interval, now() + ${o.dueIn ?? '0 s'}::interval)`.execute(t.db);
    return id;
  };

  it('the first attempt of every earlier page: one not tried yet (until it is due), one being sent (now), and not a page in its retries', async () => {
    const last = { id: newId(), webhookId: hook, createdAt: new Date() };
    const wait = async () => (await deliveries.earlierPagesWait(t.db, [last])).get(last.id);
    // Alone: nothing to wait for.
    expect(await wait()).toBeUndefined();
    // A page in its retries (two attempts logged), due in 3 days: not waited for (it held the
    // last page for its whole schedule before).
    const retried = await page({ status: 'pending', attempts: 2, createdAgo: '1 hour', dueIn: '3 days' });
    await sql`insert into delivery_attempts (delivery_id, webhook_id, attempt, started_at, duration_ms, status_code, outcome, request_headers)
              values (${retried}, ${hook}, 1, now() - interval '50 minutes', 10, 500, 'http_error', '{}'), (${retried}, ${hook}, 2, now() - interval '40 minutes', 10, 500, 'http_error', '{}')`.execute(t.db);
    expect(await wait()).toBeUndefined();
    // Its retry being sent: not waited for either.
    await sql`update deliveries set status = 'delivering', attempts = 3, leased_by = 'w' where id = ${retried}`.execute(t.db);
    expect(await wait()).toBeUndefined();
    // One whose only claim was lost in a crash (counted at claim, never sent, put back by the
    // lease reaper): not tried yet, so waited for.
    // (Due a second ago: due times are stored to the millisecond, and one due "now" could round
    // to a fraction of a millisecond after the query's now().)
    const lost = await page({ status: 'pending', attempts: 1, createdAgo: '5 minutes', dueIn: '-1 s' });
    expect(await wait()).toBe(0);
    await sql`update deliveries set status = 'succeeded' where id = ${lost}`.execute(t.db);
    // A first attempt being made, of a page made 2 hours before (a long sync): now (0).
    const first = await page({ status: 'delivering', attempts: 1, createdAgo: '2 hours' });
    await sql`update deliveries set leased_by = 'w' where id = ${first}`.execute(t.db);
    expect(await wait()).toBe(0);
    await sql`update deliveries set status = 'succeeded', leased_by = null where id = ${first}`.execute(t.db);
    // One never tried, due in 10 s: until then.
    await page({ status: 'pending', attempts: 0, createdAgo: '1 minute', dueIn: '10 seconds' });
    const ms = await wait();
    expect(ms).toBeGreaterThan(8_000);
    expect(ms).toBeLessThanOrEqual(10_001); // stored to the millisecond
    // Pages made after it (a later run's) are not earlier pages.
    expect((await deliveries.earlierPagesWait(t.db, [{ ...last, createdAt: new Date(Date.now() - 3 * 3600_000) }])).get(last.id)).toBeUndefined();
  });
});

describe('a webhook whose secret cannot be decrypted', () => {
  it('fails its own deliveries (secret_unreadable, retried, then dead); every other webhook is delivered', async () => {
    const bad = await stack.trutoWebhook('/lease/unreadable');
    const good = await stack.trutoWebhook('/lease/readable');
    // As after a wrong HOOKPOST_ENCRYPTION_KEY, or a damaged row.
    await db.updateTable('webhooks').set({ secret_encrypted: Buffer.from('not what was sealed') }).where('id', '=', bad.id).execute();
    for (let i = 0; i < 5; i++) expect((await stack.call('POST', '/v1/events', { type: 'record:created', data: { i } })).status).toBe(202);
    const received = await waitFor(at('/lease/readable'), (r) => r.length >= 5);
    expect(received.length).toBeGreaterThanOrEqual(5);
    expect(received.filter((d) => d.webhook_id === good.id).every((d) => d.verified)).toBe(true);
    const failed = await waitFor(
      () => stack.call('GET', `/v1/webhooks/${bad.id}/deliveries?status=dead`),
      (r) => r.body.result.length === 5,
    );
    expect(failed.body.result.length).toBe(5);
    const attempts = await stack.call('GET', `/v1/deliveries/${failed.body.result[0].id}/attempts`);
    expect((attempts.body as { outcome: string }[]).map((a) => a.outcome)).toEqual(['secret_unreadable', 'secret_unreadable', 'secret_unreadable', 'secret_unreadable']);
    expect(at('/lease/unreadable')().length).toBe(0);
    expect(stack.workers[0]?.output()).toContain('webhooks whose secret cannot be decrypted');
  }, 30_000);
});

describe('a worker started with the wrong HOOKPOST_ENCRYPTION_KEY', () => {
  let other: Stack;
  beforeAll(async () => {
    other = await startStack({ workers: 0 });
  });
  afterAll(async () => other?.close());

  it('hands its deliveries back (no attempt spent, no health lost) until a worker with the right key sends them', async () => {
    const hook = await other.trutoWebhook('/wrong-key');
    const wrong = await other.startWorker({ HOOKPOST_ENCRYPTION_KEY: Buffer.alloc(32, 7).toString('base64') });
    for (let i = 0; i < 3; i++) expect((await other.call('POST', '/v1/events', { type: 'record:created', data: { i } })).status).toBe(202);
    await waitFor(() => wrong.output(), (out) => out.includes('no webhook secret decrypts'), 10_000);
    // While it waits, NOTIFYs (20 events, one request each) do not make it claim and hand back
    // a batch each time: statements that change deliveries' status (claims, releases) are counted.
    await sql`create table status_writes (at timestamptz not null default clock_timestamp())`.execute(other.database.db);
    await sql`create function count_status_write() returns trigger language plpgsql as $$ begin insert into status_writes default values; return null; end $$`.execute(other.database.db);
    await sql`create trigger count_status_writes after update of status on deliveries for each statement execute function count_status_write()`.execute(other.database.db);
    for (let i = 0; i < 20; i++) expect((await other.call('POST', '/v1/events', { type: 'record:created', data: { more: i } })).status).toBe(202);
    await sleep(1_500);
    const writes = Number((await sql<{ n: string }>`select count(*) as n from status_writes`.execute(other.database.db)).rows[0]?.n);
    expect(writes).toBeLessThan(8); // 2 here; 26 when every NOTIFY cut the wait short
    await sql`drop trigger count_status_writes on deliveries`.execute(other.database.db);
    const rows = await other.database.db.selectFrom('deliveries').select(['status', 'attempts']).where('webhook_id', '=', hook.id).execute();
    expect(rows.map((r) => [r.status, r.attempts])).toEqual(Array.from({ length: 23 }, () => ['pending', 0]));
    const health = await other.database.db.selectFrom('webhooks').select(['is_healthy', 'consecutive_failures']).where('id', '=', hook.id).executeTakeFirstOrThrow();
    expect(health).toEqual({ is_healthy: true, consecutive_failures: 0 });
    await wrong.kill('SIGKILL');
    await other.startWorker();
    const received = await waitFor(() => other.receiver.deliveries().filter((d) => d.path === '/wrong-key'), (r) => r.length === 23);
    expect(received.map((d) => d.verified)).toEqual(Array.from({ length: 23 }, () => true));
  }, 30_000);
});
