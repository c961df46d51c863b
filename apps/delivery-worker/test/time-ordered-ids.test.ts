/**
 * Events and deliveries take time-ordered ids (UUID version 7, migration 0007), made in JS
 * (newId) and in SQL (hookpost_uuid_v7, for fan-out and replay rows); and a webhook's
 * deliveries are listed newest first, in pages that neither skip nor repeat a row, from
 * the index rebuilt ascending in the same migration.
 */
import { deliveries, events, newId, type NewEvent } from '@hookpost/db';
import { createPlainSetup, plainEvent, type TestDatabase } from '@hookpost/testkit';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

let t: TestDatabase;
let scope: { workspaceId: string; environmentId: string };
let webhookId: string;

beforeAll(async () => {
  ({ t, scope, webhookId } = await createPlainSetup('ids'));
});
afterAll(async () => t?.drop());

const V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** The Unix milliseconds a version 7 UUID starts with. */
const msOf = (id: string) => parseInt(id.replace(/-/g, '').slice(0, 12), 16);

const event = (): NewEvent => plainEvent(scope, { id: 'contact_1' });

describe('time-ordered ids', () => {
  it('newId makes distinct version 7 UUIDs that start with the current time', () => {
    const before = Date.now();
    const ids = Array.from({ length: 10_000 }, () => newId());
    const after = Date.now();
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) {
      expect(id).toMatch(V7);
      expect(msOf(id)).toBeGreaterThanOrEqual(before);
      expect(msOf(id)).toBeLessThanOrEqual(after);
    }
    // Across milliseconds they sort by time (within one millisecond, in any order).
    const sorted = [...ids].sort();
    expect(sorted.map(msOf)).toEqual(ids.map(msOf).sort((a, b) => a - b));
  });

  it('the deliveries a fan-out and a replay insert get version 7 ids of the time they were made', async () => {
    const before = Date.now();
    const [ingested] = await events.ingestEvents(t.db, [event()]);
    expect(ingested?.deliveries).toBe(1);
    const fanned = await t.db.selectFrom('deliveries').select(['id', 'created_at']).where('event_id', '=', ingested?.eventId as string).execute();
    expect(fanned).toHaveLength(1);
    const [replayed] = await deliveries.replayDeliveries(t.db, scope.workspaceId, [fanned[0]?.id as string]);
    const after = Date.now();
    for (const id of [fanned[0]?.id as string, replayed as string]) {
      expect(id).toMatch(V7);
      // Postgres's clock and ours are the same machine's; allow for the rounding of the ms.
      expect(msOf(id)).toBeGreaterThanOrEqual(before - 1);
      expect(msOf(id)).toBeLessThanOrEqual(after + 1);
    }
    const many = await sql<{ id: string }>`select hookpost_uuid_v7() as id from generate_series(1, 5000)`.execute(t.db);
    expect(new Set(many.rows.map((r) => r.id)).size).toBe(5000);
  });
});

describe("a webhook's deliveries, newest first", () => {
  it('pages by (created_at, id) descending without skipping or repeating, ties included', async () => {
    await sql`delete from deliveries where webhook_id = ${webhookId}`.execute(t.db);
    // Two statements, so two created_at values, each shared by several rows (ties broken by id).
    for (const n of [5, 4]) {
      await deliveries.insertDeliveries(
        t.db,
        Array.from({ length: n }, () => ({ id: newId(), workspace_id: scope.workspaceId, webhook_id: webhookId, kind: 'test' as const, payload: {}, status: 'held' as const })),
      );
      await new Promise((r) => setTimeout(r, 5));
    }
    const all = await t.db.selectFrom('deliveries').select(['id', 'created_at']).where('webhook_id', '=', webhookId).execute();
    const expected = [...all]
      .sort((a, b) => b.created_at.getTime() - a.created_at.getTime() || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0))
      .map((r) => r.id);
    expect(new Set(all.map((r) => r.created_at.getTime())).size).toBe(2);

    const seen: string[] = [];
    let before: { createdAt: Date; id: string } | undefined;
    for (let page = 0; page < 10; page++) {
      const rows = await deliveries.listWebhookDeliveries(t.db, scope.workspaceId, webhookId, { limit: 2, ...(before ? { before } : {}) });
      if (rows.length === 0) break;
      seen.push(...rows.map((r) => r.id));
      const last = rows[rows.length - 1] as (typeof rows)[number];
      before = { createdAt: last.created_at, id: last.id };
    }
    expect(seen).toEqual(expected);
  });
});
