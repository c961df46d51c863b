/**
 * Virtual webhooks end to end: the API and worker as processes, the mock provider (a
 * third-party list API) and the mock receiver in-process, intervals of a few hundred
 * milliseconds.
 */
import { randomUUID } from 'node:crypto';
import { parseExact } from '@hookpost/contract';
import type { ReceivedDelivery } from '@hookpost/mock-receiver';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { eventually } from './stack.js';
import { startVirtualKit, type Run, type VirtualKit } from './virtual-kit.js';

let kit: VirtualKit;
beforeAll(async () => {
  kit = await startVirtualKit();
});
afterAll(async () => kit?.close());

const bodies = (path: string) => kit.bodies(path);
const ids = (path: string, type?: string) => kit.ids(path, type);
const connection = (token: string) => kit.connection(token);
const webhook = (...a: Parameters<VirtualKit['webhook']>) => kit.webhook(...a);
const runs = (id: string) => kit.runs(id);
const runsAfter = (...a: Parameters<VirtualKit['runsAfter']>) => kit.runsAfter(...a);
const created = (token: string, fields?: Record<string, unknown>) => kit.created(token, fields);

describe('change detection', () => {
  test('a record with what Postgres cannot store (NUL, an unpaired surrogate) arrives with U+FFFD in their place, and the stream keeps running', async () => {
    const token = `tok-${randomUUID()}`;
    const conn = await connection(token);
    const hook = await webhook(conn, '/unstorable/created', { event: 'created' });
    await runsAfter(hook, Date.now());
    const x = created(token, { name: 'Ada\u0000Lovelace', title: 'x\ud800y', 'note\u0000': 'kept' });
    await eventually(() => ids('/unstorable/created').includes(x), 20_000, 'the record with a NUL');
    const record = bodies('/unstorable/created')
      .flatMap((b) => b.data)
      .find((r) => r.id === x);
    expect(record).toMatchObject({ name: 'Ada\ufffdLovelace', title: 'x\ufffdy', 'note\ufffd': 'kept' });
    const y = created(token, { name: 'Grace 😀' });
    await eventually(() => ids('/unstorable/created').includes(y), 20_000, 'the next record');
    expect(bodies('/unstorable/created').flatMap((b) => b.data).find((r) => r.id === y)?.name).toBe('Grace 😀');
    expect((await runs(hook)).filter((r) => r.status === 'failed')).toEqual([]);
  });

  test('a record nested thousands of levels deep arrives with its too-deep part cut out, and the stream keeps running', async () => {
    // 3,500 levels: the provider can still serialise it (V8's JSON.stringify stops near
    // 4,500); fingerprinting it whole overflowed the worker's stack on every run.
    const token = `tok-${randomUUID()}`;
    const conn = await connection(token);
    const hook = await webhook(conn, '/deep/created', { event: 'created' });
    await runsAfter(hook, Date.now());
    let deep: unknown = 'bottom';
    for (let i = 0; i < 3_500; i++) deep = [deep];
    const x = created(token, { name: 'Deep', deep });
    await eventually(() => ids('/deep/created').includes(x), 20_000, 'the deep record');
    const record = bodies('/deep/created')
      .flatMap((b) => b.data)
      .find((r) => r.id === x);
    expect(record?.name).toBe('Deep');
    expect(JSON.stringify(record?.deep)).toMatch(/^\[+"\[nested deeper than 100 levels: not kept\]"\]+$/);
    const y = created(token, { name: 'After' });
    await eventually(() => ids('/deep/created').includes(y), 20_000, 'the next record');
    expect((await runs(hook)).filter((r) => r.status === 'failed')).toEqual([]);
  });

  test('numbers a double cannot hold (a 64-bit id) arrive exactly as the source wrote them, filter as their text, are signed validly, and a record unchanged stays unsent', async () => {
    // Before, the poller read the answer with JSON.parse: 12345678901234567890 arrived as
    // 12345678901234567000, and a filter on it matched nothing.
    const token = `tok-${randomUUID()}`;
    const conn = await connection(token);
    const big = '12345678901234567890';
    const hook = await webhook(conn, '/exact-poll/created', { event: 'created', filters: { owner_id: big } });
    await runsAfter(hook, Date.now());
    const x = created(token, { name: 'Big', owner_id: parseExact(big), dec: parseExact('0.12345678901234567890123'), list: parseExact('[18446744073709551615,2]') });
    created(token, { name: 'Other owner', owner_id: parseExact('12345678901234567891') });
    await eventually(() => ids('/exact-poll/created').includes(x), 20_000, 'the record with a 64-bit owner id');
    const got = kit.stack.receiver.deliveries().filter((d: ReceivedDelivery) => d.path === '/exact-poll/created');
    expect(got).toHaveLength(1);
    const body = got[0]?.raw_body.replace(/([:,]) /g, '$1') ?? '';
    for (const n of [`"owner_id":${big}`, '"dec":0.12345678901234567890123', '"list":[18446744073709551615,2]']) expect(body).toContain(n);
    expect(body).not.toContain('hp-exact');
    expect(got[0]?.verified).toBe(true);
    expect(got[0]?.signatures.unified).toBe('valid');
    // Polled again, unchanged: no second delivery (its fingerprint is of the same text).
    await runsAfter(hook, Date.now(), 2);
    expect(ids('/exact-poll/created')).toEqual([x]);
  });

  test('created, updated and deleted records reach exactly the webhooks that asked; unchanged ones reach nobody; one poll serves all', async () => {
    const token = `tok-${randomUUID()}`;
    const conn = await connection(token);
    const seeded = kit.provider.records(token, 'crm_contact');
    expect(seeded.length).toBe(5);
    const [a, b, c] = await Promise.all([
      webhook(conn, '/cud/created', { event: 'created' }),
      webhook(conn, '/cud/updated', { event: 'updated' }),
      webhook(conn, '/cud/deleted', { event: 'deleted' }),
    ]);
    await runsAfter(a, Date.now());

    const x = created(token);
    const [updated, touched, deleted] = seeded as [(typeof seeded)[0], (typeof seeded)[0], (typeof seeded)[0]];
    expect(kit.provider.updateRecord(token, 'crm_contact', updated.id, { type: 'CUSTOMER-X' }).ok).toBe(true);
    expect(kit.provider.touchRecord(token, 'crm_contact', touched.id).ok).toBe(true);
    expect(kit.provider.deleteRecord(token, 'crm_contact', deleted.id).ok).toBe(true);

    await eventually(() => ids('/cud/created').length + ids('/cud/updated').length + ids('/cud/deleted').length >= 3, 20_000, 'three changes');
    // Two more complete runs: anything extra (a re-send, the touched record) would show by now.
    await runsAfter(a, Date.now(), 2);

    expect(ids('/cud/created')).toEqual([x]);
    expect(ids('/cud/updated')).toEqual([updated.id]);
    expect(ids('/cud/deleted')).toEqual([deleted.id]);
    for (const p of ['/cud/created', '/cud/updated', '/cud/deleted']) {
      for (const body of bodies(p)) expect(body.type).toBe('VIRTUAL');
    }
    const upd = bodies('/cud/updated')[0]?.data[0];
    expect(upd?.type).toBe('CUSTOMER-X');
    const del = bodies('/cud/deleted')[0]?.data[0];
    expect(del?.deleted_at).toBeTruthy();
    // Signed and verified like every delivery.
    for (const d of kit.stack.receiver.deliveries().filter((d: ReceivedDelivery) => d.path.startsWith('/cud/'))) expect(d.verified).toBe(true);

    // One stream: the three webhooks show the same runs, and the source saw one request per run.
    const [ra, rb, rc] = await Promise.all([runs(a), runs(b), runs(c)]);
    const finished = (rs: Run[]) => rs.filter((r) => r.status !== 'running').map((r) => r.id);
    expect(finished(rb).slice(0, 3)).toEqual(finished(ra).slice(0, 3));
    expect(finished(rc).slice(0, 3)).toEqual(finished(ra).slice(0, 3));
    // …and the source saw no more list requests than the stream had runs (not one per webhook).
    const streamRuns = await kit.stack.database.db.selectFrom('poll_runs').select('id').where('id', 'in', finished(ra)).execute();
    expect(streamRuns.length).toBe(finished(ra).length);
    const firstRun = Math.min(...ra.map((r) => Date.parse(r.started_at)));
    const requestsSince = kit.provider.requests({ token }).filter((r) => Date.parse(r.at) >= firstRun).length;
    expect(requestsSince).toBeLessThanOrEqual(ra.length + 1);
  });

  test('page_max_limit splits pages, fields project, filters reach the source', async () => {
    const token = `tok-${randomUUID()}`;
    const conn = await connection(token);
    const id = await webhook(conn, '/pages', { page_max_limit: 2, fields: 'name,owner_id', filters: { owner_id: 'owner-x' } });
    await runsAfter(id, Date.now());
    const mine = [1, 2, 3, 4, 5].map(() => created(token, { owner_id: 'owner-x' }));
    created(token, { owner_id: 'owner-y' });
    await eventually(() => ids('/pages').length >= 5, 20_000, 'five records');
    await runsAfter(id, Date.now(), 2);

    expect(ids('/pages').sort()).toEqual([...mine].sort());
    const sizes = bodies('/pages').map((b) => b.data.length);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(2);
    expect(sizes.reduce((s, n) => s + n, 0)).toBe(5);
    for (const r of bodies('/pages').flatMap((b) => b.data)) {
      expect(Object.keys(r).sort()).toEqual(['id', 'name', 'owner_id']);
      expect(r.owner_id).toBe('owner-x');
    }
    const reqs = kit.provider.requests({ token });
    expect(reqs.length).toBeGreaterThan(0);
    for (const r of reqs) expect(r.query.filter).toEqual({ owner_id: 'owner-x' });
    expect(reqs.at(-1)?.query.fields?.split(',').sort()).toEqual(['name', 'owner_id']);
  });

  test('include_all sends the history as INITIAL-PARTIAL pages then INITIAL-COMPLETE, then only increments', async () => {
    const token = `tok-${randomUUID()}`;
    const conn = await connection(token);
    // 5 seeded + 20 more = 25 live records, and one tombstone that is not history to send.
    const extra = Array.from({ length: 21 }, () => created(token));
    expect(kit.provider.deleteRecord(token, 'crm_contact', extra[0] as string).ok).toBe(true);
    const live = kit.provider.records(token, 'crm_contact').filter((r) => !r.deleted_at).map((r) => r.id);
    expect(live.length).toBe(25);

    const id = await webhook(conn, '/initial', { page_max_limit: 10 }, true);
    await eventually(() => bodies('/initial').some((b) => b.type === 'INITIAL-COMPLETE'), 20_000, 'INITIAL-COMPLETE');
    const initial = bodies('/initial');
    expect(initial.map((b) => b.type)).toEqual(['INITIAL-PARTIAL', 'INITIAL-PARTIAL', 'INITIAL-COMPLETE']);
    expect(initial.map((b) => b.data.length)).toEqual([10, 10, 5]);
    expect(ids('/initial').sort()).toEqual([...live].sort());
    expect((await runs(id)).some((r) => r.trigger === 'initial' && r.status === 'completed')).toBe(true);

    const later = created(token);
    await eventually(() => ids('/initial', 'VIRTUAL').length >= 1, 20_000, 'the increment');
    await runsAfter(id, Date.now(), 2);
    expect(ids('/initial', 'VIRTUAL')).toEqual([later]);
    expect(ids('/initial').length).toBe(26);
  });

  test('trigger runs a poll now', async () => {
    const token = `tok-${randomUUID()}`;
    const conn = await connection(token);
    const id = await webhook(conn, '/trigger', { interval: 60 });
    const x = created(token);
    // Due in an hour; the trigger makes it now.
    expect((await kit.stack.call('PUT', `/unified/webhook/${id}/trigger`)).status).toBe(200);
    await eventually(() => ids('/trigger').includes(x), 10_000, 'the triggered run');
    // The page's delivery can arrive before the run's record commits: wait for the record.
    const [run] = await runsAfter(id, 0);
    expect(run?.trigger).toBe('manual');
    // A newly created webhook's stream baseline is its creation: x (created after) is news.
    expect(ids('/trigger')).toEqual([x]);
  });
});
