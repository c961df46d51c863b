/**
 * Deliveries have no foreign key to their webhook (migration 0006): every statement that
 * inserts deliveries locks its webhooks FOR KEY SHARE, and deleting a webhook locks it
 * FOR UPDATE and records it for the worker to delete its deliveries in batches (migration
 * 0009). These tests race the two on real Postgres, and purge what a delete left.
 */
import { randomUUID } from 'node:crypto';
import { deliveries, events, webhooks, workspaces, type Database, type NewEvent } from '@hookpost/db';
import { createTestDatabase, insertPlainWebhook, plainEvent, type TestDatabase } from '@hookpost/testkit';
import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

let t: TestDatabase;
let scope: { workspaceId: string; environmentId: string };

beforeAll(async () => {
  t = await createTestDatabase();
  const { workspace, environment } = await workspaces.createWorkspace(t.db, 'integrity');
  scope = { workspaceId: workspace.id, environmentId: environment.id };
});
afterAll(async () => t?.drop());

function webhook(): Promise<string> {
  return insertPlainWebhook(t.db, scope, 'http://127.0.0.1:9/integrity');
}

const event = (): NewEvent => plainEvent(scope, { id: randomUUID() });

async function purgeAll(): Promise<void> {
  while ((await deliveries.purgeDeletedWebhook(t.db, 1000)) !== null);
}

async function deliveriesOf(db: Kysely<Database>, webhookId: string): Promise<number> {
  const r = await sql<{ n: number }>`select count(*)::int as n from deliveries where webhook_id = ${webhookId}`.execute(db);
  return r.rows[0]?.n ?? -1;
}

/** Whether `p` is still pending after `ms`. */
async function stillPending(p: Promise<unknown>, ms = 300): Promise<boolean> {
  const pending = Symbol('pending');
  const winner = await Promise.race([p.then(() => null, () => null), new Promise((r) => setTimeout(() => r(pending), ms))]);
  return winner === pending;
}

describe('deliveries and the deletion of their webhook', () => {
  it('a delete waits for an ingest in flight and deletes what it fanned out', async () => {
    const id = await webhook();
    let deletion: Promise<boolean> | undefined;
    await t.db.transaction().execute(async (trx) => {
      const [ingested] = await events.ingestEvents(trx, [event()]);
      expect(ingested?.deliveries).toBe(1);
      deletion = webhooks.deleteWebhook(t.db, scope, id);
      // The ingest holds the webhook FOR KEY SHARE: the delete cannot take it yet.
      expect(await stillPending(deletion)).toBe(true);
    });
    expect(await deletion).toBe(true);
    // The delivery fanned out before the delete stays until the worker's purge, unseen.
    expect(await deliveriesOf(t.db, id)).toBe(1);
    const [left] = (await sql<{ id: string }>`select id from deliveries where webhook_id = ${id}`.execute(t.db)).rows;
    expect(await deliveries.getDelivery(t.db, scope, left!.id)).toBeUndefined();
    await purgeAll();
    expect(await deliveriesOf(t.db, id)).toBe(0);
  });

  it('the purge deletes a deleted webhook\'s deliveries and attempts in batches, then its record, and no other webhook\'s', async () => {
    const gone = await webhook();
    const kept = await webhook();
    for (const w of [gone, kept]) {
      await sql`insert into deliveries (id, workspace_id, webhook_id, kind, payload, status, attempts)
                select hookpost_uuid_v7(), ${scope.workspaceId}, ${w}, 'test', '{}', 'succeeded', 1 from generate_series(1, 7)`.execute(t.db);
      await sql`insert into delivery_attempts (delivery_id, webhook_id, attempt, started_at, duration_ms, outcome, request_headers)
                select id, webhook_id, 1, now(), 5, 'success', '{}' from deliveries where webhook_id = ${w}`.execute(t.db);
    }
    expect(await webhooks.deleteWebhook(t.db, scope, gone)).toBe(true);
    expect(await deliveriesOf(t.db, gone)).toBe(7);
    expect(await deliveries.purgeDeletedWebhook(t.db, 3)).toBe(3);
    expect(await deliveries.purgeDeletedWebhook(t.db, 3)).toBe(3);
    expect(await deliveries.purgeDeletedWebhook(t.db, 3)).toBe(1); // short: the record goes too
    expect(await deliveries.purgeDeletedWebhook(t.db, 3)).toBeNull();
    expect(await deliveriesOf(t.db, gone)).toBe(0);
    const attempts = async (w: string) =>
      Number((await sql<{ n: string }>`select count(*) as n from delivery_attempts where webhook_id = ${w}`.execute(t.db)).rows[0]?.n);
    expect(await attempts(gone)).toBe(0);
    expect(await deliveriesOf(t.db, kept)).toBe(7);
    expect(await attempts(kept)).toBe(7);
    await webhooks.deleteWebhook(t.db, scope, kept);
    await purgeAll();
  });

  it('two purges at once take different deleted webhooks, and neither waits for the other', async () => {
    const [first, second] = [await webhook(), await webhook()];
    for (const w of [first, second]) {
      await sql`insert into deliveries (id, workspace_id, webhook_id, kind, payload, status, attempts)
                select hookpost_uuid_v7(), ${scope.workspaceId}, ${w}, 'test', '{}', 'succeeded', 1 from generate_series(1, 4)`.execute(t.db);
      expect(await webhooks.deleteWebhook(t.db, scope, w)).toBe(true);
    }
    // Another worker's purge holds the first-deleted webhook's record for its batch.
    await t.db.transaction().execute(async (trx) => {
      await sql`select 1 from deleted_webhooks where webhook_id = ${first} for update`.execute(trx);
      const other = deliveries.purgeDeletedWebhook(t.db, 1000);
      expect(await stillPending(other)).toBe(false);
      expect(await other).toBe(4);
      expect(await deliveriesOf(t.db, second)).toBe(0);
      expect(await deliveriesOf(t.db, first)).toBe(4);
      // Nothing else is free to purge while the first is taken.
      expect(await deliveries.purgeDeletedWebhook(t.db, 1000)).toBeNull();
    });
    await purgeAll();
    expect(await deliveriesOf(t.db, first)).toBe(0);
  });

  it('an ingest that starts while a delete is in flight fans out to nothing there', async () => {
    const id = await webhook();
    const other = await webhook();
    let ingest: Promise<events.IngestedEvent[]> | undefined;
    await t.db.transaction().execute(async (trx) => {
      await trx.selectFrom('webhooks').select('id').where('id', '=', id).forUpdate().execute();
      await trx.deleteFrom('webhooks').where('id', '=', id).execute();
      ingest = events.ingestEvents(t.db, [event()]);
      expect(await stillPending(ingest)).toBe(true);
    });
    const [ingested] = (await ingest) ?? [];
    // The other webhook still gets its delivery, and the count says so.
    expect(ingested?.deliveries).toBe(1);
    expect(await deliveriesOf(t.db, id)).toBe(0);
    expect(await deliveriesOf(t.db, other)).toBe(1);
    await webhooks.deleteWebhook(t.db, scope, other);
  });

  it('test sends and virtual pages are not queued for a deleted webhook', async () => {
    const id = await webhook();
    await webhooks.deleteWebhook(t.db, scope, id);
    const row = await deliveries.insertDelivery(t.db, { id: randomUUID(), workspaceId: scope.workspaceId, webhookId: id, kind: 'test', payload: { t: 1 } });
    expect(row).toBeUndefined();
    await deliveries.insertDeliveries(t.db, [
      { id: randomUUID(), workspace_id: scope.workspaceId, webhook_id: id, kind: 'virtual', payload: { records: [] }, status: 'pending' },
    ]);
    expect(await deliveriesOf(t.db, id)).toBe(0);

    const live = await webhook();
    const queued = await deliveries.insertDelivery(t.db, { id: randomUUID(), workspaceId: scope.workspaceId, webhookId: live, kind: 'test', payload: { t: 1 } });
    expect(queued?.status).toBe('pending');
    await deliveries.insertDeliveries(t.db, [
      { id: randomUUID(), workspace_id: scope.workspaceId, webhook_id: live, kind: 'virtual', payload: { records: [] }, status: 'held' },
      { id: randomUUID(), workspace_id: scope.workspaceId, webhook_id: id, kind: 'virtual', payload: { records: [] }, status: 'pending' },
    ]);
    expect(await deliveriesOf(t.db, live)).toBe(2);
    expect(await deliveriesOf(t.db, id)).toBe(0);
  });
});
