/**
 * Retention: the worker deletes, in batches, finished deliveries (with their attempt log),
 * then events no delivery refers to, attempts, idempotency keys and poll runs older than
 * their ages, and nothing else: a pending or held delivery (and its event) stays however old. A pass runs "as if" later (pruneOnce's
 * `now`), so the rows are made now and the cutoff moves past them.
 */
import { randomUUID } from 'node:crypto';
import { deliveries, events, firstIdAt, newId } from '@hookpost/db';
import { createPlainSetup, plainEvent, whenAnswered, type TestDatabase } from '@hookpost/testkit';
import { sql } from 'kysely';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { pruneOnce, type RetentionAges } from '../src/maintenance/retention.js';

let t: TestDatabase;
let scope: { workspaceId: string; environmentId: string };
let webhookId: string;

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const ages: RetentionAges = { attemptsMs: 30 * DAY, deliveriesMs: 60 * DAY, idempotencyKeysMs: 24 * HOUR, pollRunsMs: 24 * HOUR };

beforeAll(async () => {
  ({ t, scope, webhookId } = await createPlainSetup('retention'));
});
afterAll(async () => t?.drop());

async function delivery(status: 'succeeded' | 'dead' | 'pending' | 'held', attempts = 1): Promise<string> {
  const id = newId();
  await sql`insert into deliveries (id, workspace_id, webhook_id, kind, payload, status, attempts)
            values (${id}, ${scope.workspaceId}, ${webhookId}, 'test', '{}', ${status}, ${attempts})`.execute(t.db);
  for (let a = 1; a <= attempts; a++) {
    await sql`insert into delivery_attempts (delivery_id, webhook_id, attempt, started_at, duration_ms, outcome, request_headers)
              values (${id}, ${webhookId}, ${a}, now(), 5, 'http_500', '{}')`.execute(t.db);
  }
  return id;
}

const count = async (table: 'deliveries' | 'delivery_attempts' | 'events' | 'idempotency_keys', where = sql`true`) =>
  Number((await sql<{ n: string }>`select count(*) as n from ${sql.table(table)} where ${where}`.execute(t.db)).rows[0]?.n);
const exists = async (id: string) => (await count('deliveries', sql`id = ${id}`)) === 1;
const eventExists = async (id: string) => (await count('events', sql`id = ${id}`)) === 1;

/** Ingests one event (fanned out to the file's webhook); returns it and its delivery. */
async function ingested(): Promise<{ eventId: string; deliveryId: string }> {
  const event = plainEvent(scope, { n: newId() });
  await events.ingestEvents(t.db, [event]);
  const r = await sql<{ id: string }>`select id from deliveries where event_id = ${event.id}`.execute(t.db);
  expect(r.rows).toHaveLength(1);
  return { eventId: event.id, deliveryId: r.rows[0]!.id };
}
const finish = (id: string) => sql`update deliveries set status = 'succeeded', finished_at = now() where id = ${id}`.execute(t.db);

it('firstIdAt is below every id made before that millisecond and above none made after', async () => {
  const before = newId();
  await new Promise((r) => setTimeout(r, 3));
  const cut = firstIdAt(new Date());
  await new Promise((r) => setTimeout(r, 3));
  const after = newId();
  const r = await sql<{ below: boolean; above: boolean }>`select ${before}::uuid < ${cut}::uuid as below, ${after}::uuid > ${cut}::uuid as above`.execute(t.db);
  expect(r.rows[0]).toEqual({ below: true, above: true });
});

it('deletes finished deliveries past their age with their attempts; keeps pending, held and younger ones', async () => {
  const succeeded = await delivery('succeeded', 2);
  const dead = await delivery('dead', 3);
  const pending = await delivery('pending', 1);
  const held = await delivery('held', 1);

  // 59 days on: nothing is old enough (attempts' 30 days have passed: those go).
  const early = await pruneOnce(t.db, ages, Date.now() + 59 * DAY);
  expect(early.deliveries).toBe(0);
  expect(early.attempts).toBe(7);
  for (const id of [succeeded, dead, pending, held]) expect(await exists(id)).toBe(true);

  await delivery('succeeded', 1); // its attempt, younger, survives the next pass's attempts rule but not its delivery's
  const later = await pruneOnce(t.db, ages, Date.now() + 61 * DAY);
  expect(later.deliveries).toBe(3);
  expect(await exists(succeeded)).toBe(false);
  expect(await exists(dead)).toBe(false);
  expect(await exists(pending)).toBe(true);
  expect(await exists(held)).toBe(true);
  expect(await count('delivery_attempts')).toBe(0); // a deleted delivery's attempts go with it
});

it('deletes in batches until none are left', async () => {
  await sql`insert into deliveries (id, workspace_id, webhook_id, kind, payload, status, attempts)
            select hookpost_uuid_v7(), ${scope.workspaceId}, ${webhookId}, 'test', '{}', 'succeeded', 1 from generate_series(1, 12000)`.execute(t.db);
  const before = await count('deliveries');
  const pass = await pruneOnce(t.db, ages, Date.now() + 61 * DAY);
  expect(pass.deliveries).toBe(12000);
  expect(await count('deliveries')).toBe(before - 12000);
});

it('a row with a random (pre-0007) id made within the age is kept even when its id sorts low', async () => {
  const id = `00000000-0000-4000-8000-${randomUUID().slice(24)}`;
  await sql`insert into deliveries (id, workspace_id, webhook_id, kind, payload, status, attempts)
            values (${id}, ${scope.workspaceId}, ${webhookId}, 'test', '{}', 'succeeded', 1)`.execute(t.db);
  await pruneOnce(t.db, ages, Date.now());
  expect(await exists(id)).toBe(true);
});

it('deletes idempotency keys past their age, so the key is free again', async () => {
  const key = { workspaceId: scope.workspaceId, key: `k-${newId()}`, requestHash: Buffer.from('h') };
  expect(await events.claimIdempotencyKeys(t.db, [key])).toEqual([null]);
  expect((await pruneOnce(t.db, ages, Date.now() + 23 * HOUR)).idempotencyKeys).toBe(0);
  expect(await count('idempotency_keys')).toBe(1);
  expect((await pruneOnce(t.db, ages, Date.now() + 25 * HOUR)).idempotencyKeys).toBe(1);
  expect(await count('idempotency_keys')).toBe(0);
  expect(await events.claimIdempotencyKeys(t.db, [key])).toEqual([null]); // claimed afresh, not a repeat
});

it('a replay of a delivery that retention then deletes still sends the replay', async () => {
  const original = await delivery('dead', 1);
  const [replay] = await deliveries.replayDeliveries(t.db, scope.workspaceId, [original]);
  await pruneOnce(t.db, ages, Date.now() + 61 * DAY);
  expect(await exists(original)).toBe(false);
  expect(await exists(replay!)).toBe(true); // pending: kept until it finishes
});

it('deletes an old event once no delivery refers to it; keeps one a pending delivery still needs', async () => {
  const done = await ingested();
  const waiting = await ingested();
  await finish(done.deliveryId);
  const nobody = plainEvent(scope, { n: 'fanned out to nobody' });
  await sql`insert into events (id, workspace_id, environment_id, type, data) values (${nobody.id}, ${scope.workspaceId}, ${scope.environmentId}, 'record:created', '{}')`.execute(t.db);

  expect((await pruneOnce(t.db, ages, Date.now() + 59 * DAY)).events).toBe(0);
  const pass = await pruneOnce(t.db, ages, Date.now() + 61 * DAY);
  expect(pass.events).toBeGreaterThanOrEqual(2);
  expect(await eventExists(done.eventId)).toBe(false);
  expect(await eventExists(nobody.id)).toBe(false);
  expect(await eventExists(waiting.eventId)).toBe(true);
  expect(await exists(waiting.deliveryId)).toBe(true);
});

it('a replay in flight keeps its event: retention deletes the old delivery, not the event the replay needs', async () => {
  const { eventId, deliveryId } = await ingested();
  await finish(deliveryId);
  let replayId: string | undefined;
  let passing: ReturnType<typeof pruneOnce> | undefined;
  await t.db.transaction().execute(async (trx) => {
    [replayId] = await deliveries.replayDeliveries(trx, scope.workspaceId, [deliveryId]);
    // The replay has not committed: the pass deletes the old delivery, and lowering its
    // event's count waits for the replay, which raised it.
    passing = pruneOnce(t.db, ages, Date.now() + 61 * DAY);
    await new Promise((r) => setTimeout(r, 200));
  });
  const pass = await passing!;
  expect(pass.deliveries).toBeGreaterThanOrEqual(1);
  expect(await exists(deliveryId)).toBe(false);
  expect(await exists(replayId!)).toBe(true);
  expect(await eventExists(eventId)).toBe(true);
  await pruneOnce(t.db, ages, Date.now() + 61 * DAY);
  expect(await eventExists(eventId)).toBe(true); // the replay, pending, refers to it
});

const refsOf = async (eventId: string) => (await sql<{ refs: number | null }>`select refs from events where id = ${eventId}`.execute(t.db)).rows[0]?.refs;

it('an event counts the deliveries that refer to it: its fan-out, plus replays, less those deleted', async () => {
  const { eventId, deliveryId } = await ingested();
  expect(await refsOf(eventId)).toBe(1);
  await finish(deliveryId);
  const [replay] = await deliveries.replayDeliveries(t.db, scope.workspaceId, [deliveryId]);
  expect(await refsOf(eventId)).toBe(2);
  // The original goes (finished, old); the replay (pending) keeps the event.
  await pruneOnce(t.db, ages, Date.now() + 61 * DAY);
  expect(await exists(deliveryId)).toBe(false);
  expect(await refsOf(eventId)).toBe(1);
  // The replay finishes; both it and then the event go.
  await finish(replay!);
  const pass = await pruneOnce(t.db, ages, Date.now() + 61 * DAY);
  expect(pass.deliveries).toBeGreaterThanOrEqual(1);
  expect(await eventExists(eventId)).toBe(false);
});

it('an event stored before its deliveries were counted (refs null) is counted when old: kept while referred to, then deleted', async () => {
  const { eventId, deliveryId } = await ingested();
  await sql`update events set refs = null where id = ${eventId}`.execute(t.db);
  await pruneOnce(t.db, ages, Date.now() + 61 * DAY);
  expect(await eventExists(eventId)).toBe(true); // its delivery is pending
  expect(await refsOf(eventId)).toBe(1); // counted now
  await finish(deliveryId);
  await pruneOnce(t.db, ages, Date.now() + 61 * DAY);
  expect(await eventExists(eventId)).toBe(false);
});

it('old events still referred to do not stop a pass: each batch goes on after the last one looked at', async () => {
  const held = [await ingested(), await ingested(), await ingested()]; // pending: kept
  const later = [await ingested(), await ingested()];
  for (const d of later) await finish(d.deliveryId);
  const olderThan = new Date(Date.now() + 61 * DAY);
  await deliveries.deleteFinishedDeliveries(t.db, olderThan, 100);
  // Batches of 2 (retention's are 5,000): the first ones hold only events still referred to
  // (these and earlier tests' pending deliveries); a batch starting over from the first old
  // event would never reach the two deletable ones.
  let after: string | null = null;
  let deleted = 0;
  for (let i = 0; i < 50; i++) {
    const b: events.EventRetentionBatch = await events.deleteOldEvents(t.db, olderThan, 2, after);
    deleted += b.deleted;
    if (b.scanned < 2) break;
    after = b.lastId;
  }
  expect(deleted).toBe(2);
  for (const d of later) expect(await eventExists(d.eventId)).toBe(false);
  for (const d of held) expect(await eventExists(d.eventId)).toBe(true);
});

it('a replay that comes while retention counts an uncounted event waits for the count and adds to it', async () => {
  const { eventId, deliveryId } = await ingested();
  await finish(deliveryId);
  await sql`update events set refs = null where id = ${eventId}`.execute(t.db);
  // Once retention holds the old events (its first statement has answered), a replay of the
  // event's delivery starts on another session: it waits for retention's lock.
  let replaying: Promise<string[]> | undefined;
  const replayDuringCount = whenAnswered('for update skip locked', async () => {
    replaying = deliveries.replayDeliveries(t.db, scope.workspaceId, [deliveryId]);
    await new Promise((r) => setTimeout(r, 300));
  });
  await events.deleteOldEvents(t.db.withPlugin(replayDuringCount), new Date(Date.now() + 61 * DAY), 5000);
  expect(await eventExists(eventId)).toBe(true); // its delivery is still there: counted 1
  expect(await replaying).toHaveLength(1);
  // The original and the copy: retiring the original leaves the copy's reference.
  expect(await refsOf(eventId)).toBe(2);
});
