/**
 * Finished attempts while the database is away (CompletionWriter): a batch is retried for as
 * long as its deliveries' lease lasts, so an outage of a few seconds loses no attempt from the
 * log and sends nothing twice; past the lease it is given up with an error log (the
 * deliveries come back and are sent again). The outage: the completion statement answers
 * "Connection terminated" until a set time, as a dropped session does. And what a batch's
 * results do to webhook health when some of them are late or their answer was lost.
 */
import { recordResults, type AttemptResult } from '@hookpost/delivery';
import { deliveries, newId, type Database } from '@hookpost/db';
import { createLogger, type Logger } from '@hookpost/runtime';
import { createPlainSetup, insertPlainWebhook, type TestDatabase } from '@hookpost/testkit';
import { Kysely, PostgresDialect, sql, type KyselyPlugin } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CompletionWriter } from '../src/delivery/completions.js';

let t: TestDatabase;
let scope: { workspaceId: string; environmentId: string };
let webhookId: string;

beforeAll(async () => {
  ({ t, scope, webhookId } = await createPlainSetup('completion-outage'));
});
afterAll(async () => t?.drop());

/** Every statement fails before it reaches the database, as when it cannot be reached, until `until` (ms since epoch). */
const outageUntil = (until: number): KyselyPlugin => ({
  transformQuery: (args) => {
    if (Date.now() < until) throw new Error('Connection terminated unexpectedly');
    return args.node;
  },
  transformResult: async (args) => args.result,
});

/** The first `n` statements run and commit, but their answers are lost (a dropped session, DATABASE_QUERY_TIMEOUT_MS). */
const lostAnswers = (n: number): KyselyPlugin => ({
  transformQuery: (args) => args.node,
  transformResult: async (args) => {
    if (n-- > 0) throw new Error('Connection terminated unexpectedly');
    return args.result;
  },
});

/** A delivery claimed by `workerId`, and the result of its successful attempt. */
async function claimedWithResult(workerId: string, hook = webhookId): Promise<AttemptResult> {
  const id = newId();
  await deliveries.insertDelivery(t.db, { id, workspaceId: scope.workspaceId, webhookId: hook, kind: 'event', payload: { n: 1 } });
  const { deliveries: claimed } = await deliveries.claimDue(t.db, { workerId, limit: 100, perWebhook: 100, leaseMs: 60_000 });
  expect(claimed.map((d) => d.id)).toContain(id);
  return {
    outcome: 'success',
    completion: { id, attempt: 1, status: 'succeeded', nextAttemptAt: null, statusCode: 204, error: null },
    attempt: { deliveryId: id, webhookId: hook, attempt: 1, startedAt: new Date(), durationMs: 3, statusCode: 204, outcome: 'success', error: null, responseSnippet: null, requestHeaders: {} },
  };
}

const capture = () => {
  const errors: { fields: Record<string, unknown>; msg: string }[] = [];
  const base = createLogger('test', 'silent');
  const logger = { ...base, error: (fields: Record<string, unknown>, msg: string) => errors.push({ fields, msg }), child: () => logger } as unknown as Logger;
  return { logger, errors };
};

const noHooks = { onStopped: () => undefined, onRetryAt: () => undefined };
const health = { failureThreshold: 5, pauseAfterSeconds: 3600 };
const state = async (id: string) => {
  const row = await deliveries.getDelivery(t.db, scope, id);
  const attempts = await sql<{ n: string }>`select count(*) as n from delivery_attempts where delivery_id = ${id}`.execute(t.db);
  return { status: row?.status, attempts: Number(attempts.rows[0]?.n) };
};

it('an outage of 4 s, inside the lease: the batch is written once the database answers, nothing missing', async () => {
  const workerId = `worker-${newId()}`;
  const result = await claimedWithResult(workerId);
  const { logger, errors } = capture();
  const writer = new CompletionWriter(t.db.withPlugin(outageUntil(Date.now() + 4_000)), workerId, health, logger, noHooks, 60_000);
  writer.add(result);
  await writer.flush();
  expect(await state(result.completion.id)).toEqual({ status: 'succeeded', attempts: 1 });
  expect(errors.map((e) => e.msg)).toEqual(['could not record attempts; retrying']);
}, 20_000);

it('an outage longer than the lease: the batch is given up with an error naming its deliveries', async () => {
  const workerId = `worker-${newId()}`;
  const result = await claimedWithResult(workerId);
  const { logger, errors } = capture();
  const writer = new CompletionWriter(t.db.withPlugin(outageUntil(Date.now() + 60_000)), workerId, health, logger, noHooks, 1_500);
  writer.add(result);
  const started = Date.now();
  await writer.flush();
  expect(Date.now() - started).toBeLessThan(5_000);
  expect(errors.at(-1)?.msg).toMatch(/^gave up recording a batch of attempts/);
  expect(errors.at(-1)?.fields).toMatchObject({ results: 1, deliveries: [result.completion.id] });
  // Still leased to the worker: it comes back when the lease ends.
  expect(await state(result.completion.id)).toEqual({ status: 'delivering', attempts: 0 });
}, 20_000);

it('at shutdown, a batch is retried only until the deadline given', async () => {
  const workerId = `worker-${newId()}`;
  const result = await claimedWithResult(workerId);
  const { logger, errors } = capture();
  const writer = new CompletionWriter(t.db.withPlugin(outageUntil(Date.now() + 60_000)), workerId, health, logger, noHooks, 60_000);
  writer.add(result);
  writer.giveUpBy(Date.now() + 1_000);
  const started = Date.now();
  await writer.flush();
  expect(Date.now() - started).toBeLessThan(3_000);
  expect(errors.at(-1)?.msg).toMatch(/^gave up recording/);
}, 20_000);

it('a try whose answer was lost (it committed) and its retry: each attempt logged once', async () => {
  const workerId = `worker-${newId()}`;
  const result = await claimedWithResult(workerId);
  const { logger } = capture();
  const writer = new CompletionWriter(t.db.withPlugin(lostAnswers(2)), workerId, health, logger, noHooks, 60_000);
  writer.add(result);
  await writer.flush();
  expect(await state(result.completion.id)).toEqual({ status: 'succeeded', attempts: 1 });
}, 20_000);

it("a failed try whose answer was lost (it committed): its retry still counts the failure and wakes the worker for the retry", async () => {
  // Before, the retry matched nothing (the lost try had released the lease) and the batch was
  // taken for a late one: no failure counted (a 410's disable neither), no wake-up set.
  // A late completion in the same batch (its lease ran out mid-send, the reaper put it back)
  // still counts for nothing.
  const workerId = `worker-${newId()}`;
  const retryAt = new Date(Date.now() + 60_000);
  const failedOf = (r: AttemptResult): AttemptResult => ({
    outcome: 'http_error',
    completion: { ...r.completion, status: 'pending', nextAttemptAt: retryAt, statusCode: 500, error: 'HTTP 500' },
    attempt: { ...r.attempt, statusCode: 500, outcome: 'http_error', error: 'HTTP 500' },
  });
  const failed = failedOf(await claimedWithResult(workerId));
  const late = failedOf(await claimedWithResult(workerId));
  await sql`update deliveries set lease_until = now() - interval '1 second' where id = ${late.completion.id}`.execute(t.db);
  await deliveries.reclaimExpiredLeases(t.db, 5);
  await sql`update webhooks set consecutive_failures = 0, failing_since = null, is_healthy = true where id = ${webhookId}`.execute(t.db);
  const wakeUps: Date[] = [];
  const writer = new CompletionWriter(t.db.withPlugin(lostAnswers(1)), workerId, health, capture().logger, { onStopped: () => undefined, onRetryAt: (at) => wakeUps.push(at) }, 60_000);
  writer.add(failed);
  writer.add(late);
  await writer.flush();
  expect(await state(failed.completion.id)).toEqual({ status: 'pending', attempts: 1 });
  expect(wakeUps).toEqual([retryAt]);
  const hook = await t.db.selectFrom('webhooks').select(['consecutive_failures']).where('id', '=', webhookId).executeTakeFirstOrThrow();
  expect(hook.consecutive_failures).toBe(1);
}, 20_000);

/** A failed (HTTP 500) result of the same claim. */
const failedOf = (r: AttemptResult, retryAt = new Date(Date.now() + 60_000)): AttemptResult => ({
  outcome: 'failure',
  completion: { ...r.completion, status: 'pending', nextAttemptAt: retryAt, statusCode: 500, error: 'HTTP 500' },
  attempt: { ...r.attempt, statusCode: 500, outcome: 'http_500', error: 'HTTP 500' },
});

/** A result whose claim's lease ran out before it was written (the reaper put the delivery back). */
async function madeLate(r: AttemptResult): Promise<AttemptResult> {
  await sql`update deliveries set lease_until = now() - interval '1 second' where id = ${r.completion.id}`.execute(t.db);
  await deliveries.reclaimExpiredLeases(t.db, 5);
  return r;
}

const healthOf = (id: string) =>
  t.db.selectFrom('webhooks').select(['consecutive_failures', 'is_healthy', 'failing_since', 'unhealthy_reason']).where('id', '=', id).executeTakeFirstOrThrow();

async function newHook(streak: number, healthy: boolean, unhealthyReason: string | null = null): Promise<string> {
  const id = await insertPlainWebhook(t.db, scope, `http://127.0.0.1:9/${newId()}`);
  await sql`update webhooks set consecutive_failures = ${streak}, is_healthy = ${healthy}, unhealthy_reason = ${unhealthyReason},
    failing_since = ${streak > 0 ? sql`now() - interval '1 minute'` : null} where id = ${id}`.execute(t.db);
  return id;
}

async function written(workerId: string, results: AttemptResult[], db = t.db): Promise<void> {
  const writer = new CompletionWriter(db, workerId, health, capture().logger, noHooks, 60_000);
  for (const r of results) writer.add(r);
  await writer.flush();
}

it('a late success in the batch does not end the streak of a webhook whose current attempt failed', async () => {
  // Before, the batch's heal was decided over all its results: the late 200 healed the webhook.
  const workerId = `worker-${newId()}`;
  const hook = await newHook(4, true);
  const current = failedOf(await claimedWithResult(workerId, hook));
  const late = await madeLate(await claimedWithResult(workerId, hook));
  await written(workerId, [current, late]);
  expect(await healthOf(hook)).toMatchObject({ consecutive_failures: 5, is_healthy: false });
});

it('a late failure in the batch does not keep a current success from ending the streak', async () => {
  // Before, the late 500 after the current 200 made the batch's tally "failing": no heal.
  const workerId = `worker-${newId()}`;
  const hook = await newHook(7, false);
  const current = await claimedWithResult(workerId, hook);
  const late = failedOf(await madeLate(await claimedWithResult(workerId, hook)));
  await written(workerId, [current, late]);
  expect(await healthOf(hook)).toMatchObject({ consecutive_failures: 0, is_healthy: true, failing_since: null });
});

it("a delivery's success ends the endpoint's streak but leaves the failing source's mark to the source", async () => {
  // Before, it set is_healthy while unhealthy_reason still named the source's failure.
  const workerId = `worker-${newId()}`;
  const reason = 'source:read: HTTP 503';
  const alone = await newHook(2, false, reason);
  await written(workerId, [await claimedWithResult(workerId, alone)]);
  expect(await healthOf(alone)).toMatchObject({ consecutive_failures: 0, is_healthy: false, unhealthy_reason: reason });
  // A success, then a failure, in one batch (applyHealth's reset).
  const mixed = await newHook(2, false, reason);
  const ok = await claimedWithResult(workerId, mixed);
  const failed = failedOf(await claimedWithResult(workerId, mixed));
  await written(workerId, [ok, failed]);
  expect(await healthOf(mixed)).toMatchObject({ consecutive_failures: 1, is_healthy: false, unhealthy_reason: reason });
  // Marked by the endpoint alone: a success clears it.
  const endpoint = await newHook(6, false);
  await written(workerId, [await claimedWithResult(workerId, endpoint)]);
  expect(await healthOf(endpoint)).toMatchObject({ consecutive_failures: 0, is_healthy: true });
});

it("a failed batch whose COMMIT's answer was lost: its retry counts each failure once", async () => {
  // The completion and its health are one transaction; before, health was a second one, and
  // a lost answer to it had the retry add the batch's failures to the streak again.
  let loseCommits = 1;
  class LosingCommits extends pg.Client {
    override query(...args: unknown[]): never {
      const r = (super.query as (...a: unknown[]) => unknown)(...args);
      if (args[0] === 'commit' && loseCommits > 0 && r instanceof Promise) {
        loseCommits--;
        return r.then(() => {
          throw new Error('Connection terminated unexpectedly');
        }) as never;
      }
      return r as never;
    }
  }
  const lossy = new Kysely<Database>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: t.url, Client: LosingCommits, max: 4 }) }) });
  try {
    const workerId = `worker-${newId()}`;
    const hook = await newHook(0, true);
    const one = failedOf(await claimedWithResult(workerId, hook));
    const two = failedOf(await claimedWithResult(workerId, hook));
    await written(workerId, [one, two], lossy);
    expect(loseCommits).toBe(0);
    expect(await healthOf(hook)).toMatchObject({ consecutive_failures: 2, is_healthy: true });
    expect(await state(one.completion.id)).toEqual({ status: 'pending', attempts: 1 });
  } finally {
    await lossy.destroy();
  }
}, 20_000);

it('the retry of a try still running on the server (its session reset while it waited for a lock) logs and counts the attempt once', async () => {
  // Before, the retry looked for logged attempts with its own snapshot, before the lost try
  // committed: the attempt was logged twice, and the retry counted the delivery as late.
  const workerId = `worker-${newId()}`;
  const hook = await newHook(0, true);
  const result = failedOf(await claimedWithResult(workerId, hook));
  const blocker = await t.db.connection().execute(async (conn) => {
    await sql`begin`.execute(conn);
    await sql`select 1 from deliveries where id = ${result.completion.id} for update`.execute(conn);
    // Its caller is gone: what it answers does not matter (had the retry taken the rows first,
    // its attempt would meet the retry's entry and fail).
    const lost = recordResults(t.db, workerId, [result], health, false).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 300));
    const retry = recordResults(t.db, workerId, [result], health, true);
    await new Promise((r) => setTimeout(r, 300));
    await sql`commit`.execute(conn);
    return Promise.all([lost, retry]);
  });
  const [, retried] = blocker;
  expect(retried.counted.map((r) => r.completion.id)).toEqual([result.completion.id]);
  expect(await state(result.completion.id)).toEqual({ status: 'pending', attempts: 1 });
  expect((await healthOf(hook)).consecutive_failures).toBe(1);
}, 20_000);
