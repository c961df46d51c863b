/**
 * A claim commits without waiting for the WAL flush; the completion does wait
 * (deliveries.claimDue). A claim lost in a Postgres crash is as if never made: the
 * delivery is pending again and is re-sent with the same webhook-id. What the claim sets
 * lasts only for its own transaction: a later statement on the same session, such as a
 * completion, commits durably. Shown on one session as the worker opens it, the claim
 * inside an explicit transaction so that the setting can be read before it ends.
 */
import { createDb, deliveries, newId, QUEUE_SESSION_SETTINGS, type Database, type Db } from '@hookpost/db';
import { createPlainSetup, type TestDatabase } from '@hookpost/testkit';
import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, expect, it } from 'vitest';

let t: TestDatabase;
let session: Kysely<Database>;
let scope: { workspaceId: string; environmentId: string };
let webhookId: string;

beforeAll(async () => {
  ({ t, scope, webhookId } = await createPlainSetup('claim-commit'));
  // Durable unless a statement says otherwise, whatever the server's default.
  session = createDb({ connectionString: t.url, poolMax: 1, applicationName: 'hookpost-test-claim', settings: { ...QUEUE_SESSION_SETTINGS, synchronous_commit: 'on' } });
});

afterAll(async () => {
  await session?.destroy();
  await t?.drop();
});

const syncCommit = async (db: Db) =>
  (await sql<{ synchronous_commit: string }>`show synchronous_commit`.execute(db)).rows[0]?.synchronous_commit;

it('the claim commits without waiting for the WAL flush; the next statement on the session commits durably', async () => {
  const id = newId();
  await deliveries.insertDelivery(t.db, { id, workspaceId: scope.workspaceId, webhookId, kind: 'event', payload: { n: 1 } });
  const workerId = `worker-${newId()}`;
  const inClaim = await session.transaction().execute(async (trx) => {
    const { deliveries: claimed } = await deliveries.claimDue(trx, { workerId, limit: 10, perWebhook: 10, leaseMs: 30_000 });
    expect(claimed.map((d) => d.id)).toEqual([id]);
    return syncCommit(trx);
  });
  expect(inClaim).toBe('off');
  expect(await syncCommit(session)).toBe('on');

  const inCompletion = await session.transaction().execute(async (trx) => {
    await deliveries.completeBatch(trx, workerId, [{ id, attempt: 1, status: 'succeeded', nextAttemptAt: null, statusCode: 204, error: null }], []);
    return syncCommit(trx);
  });
  expect(inCompletion).toBe('on');
  const row = await deliveries.getDelivery(t.db, scope, id);
  expect(row?.status).toBe('succeeded');
});
