/**
 * Finished attempts while the database is away (CompletionWriter): a batch is retried for as
 * long as its deliveries' lease lasts, so an outage of a few seconds loses no attempt from the
 * log and sends nothing twice; past the lease it is given up with an error log (the
 * deliveries come back and are sent again). The outage: the completion statement answers
 * "Connection terminated" until a set time, as a dropped session does.
 */
import type { AttemptResult } from '@hookpost/delivery';
import { deliveries, newId } from '@hookpost/db';
import { createLogger, type Logger } from '@hookpost/runtime';
import { createPlainSetup, type TestDatabase } from '@hookpost/testkit';
import { sql, type KyselyPlugin } from 'kysely';
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
async function claimedWithResult(workerId: string): Promise<AttemptResult> {
  const id = newId();
  await deliveries.insertDelivery(t.db, { id, workspaceId: scope.workspaceId, webhookId, kind: 'event', payload: { n: 1 } });
  const { deliveries: claimed } = await deliveries.claimDue(t.db, { workerId, limit: 100, perWebhook: 100, leaseMs: 60_000 });
  expect(claimed.map((d) => d.id)).toContain(id);
  return {
    outcome: 'success',
    completion: { id, attempt: 1, status: 'succeeded', nextAttemptAt: null, statusCode: 204, error: null },
    attempt: { deliveryId: id, webhookId, attempt: 1, startedAt: new Date(), durationMs: 3, statusCode: 204, outcome: 'success', error: null, responseSnippet: null, requestHeaders: {} },
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
