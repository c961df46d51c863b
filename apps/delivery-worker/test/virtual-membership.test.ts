/**
 * A stream's webhooks changing while it runs (the provider slowed so that a run takes seconds):
 * each page is planned for the stream's members as they are when it commits, a webhook that
 * moves mid initial sync starts it over in its new stream, a deletion during an initial sync
 * is sent, and a virtual webhook activated on the Truto face polls again.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { eventually } from './stack.js';
import { startVirtualKit, type VirtualKit } from './virtual-kit.js';

let kit: VirtualKit;
beforeAll(async () => {
  kit = await startVirtualKit({ providerRecords: 30 });
});
afterAll(async () => kit?.close());

const slow = (token: string) => kit.provider.setBehaviour(token, { latency_ms: 300 });
const live = (token: string, type: string) => kit.provider.records(token, type).filter((r) => !r.deleted_at).map((r) => r.id);

describe('members changing during a run', () => {
  test('a record deleted during an initial sync, after its page went out, is sent as deleted', async () => {
    // Before, the webhook got only live records until its sync ended, and the tombstone was
    // then known: the receiver kept the record for ever.
    const token = `tok-${randomUUID()}`;
    const conn = await kit.connection(token);
    slow(token);
    await kit.webhook(conn, '/m/initial-delete', { events: ['created', 'updated', 'deleted'], page_max_limit: 5 }, true);
    const first = await eventually(() => kit.bodies('/m/initial-delete').find((b) => b.type === 'INITIAL-PARTIAL'), 20_000, 'the first initial page');
    const victim = String(first.data[0]?.id);
    expect(kit.provider.deleteRecord(token, 'crm_contact', victim).ok).toBe(true);
    await eventually(() => kit.bodies('/m/initial-delete').some((b) => b.type === 'INITIAL-COMPLETE'), 30_000, 'INITIAL-COMPLETE');
    kit.provider.setBehaviour(token, undefined);
    const deleted = await eventually(
      () => kit.stack.receiver.deliveries().find((d) => d.path === '/m/initial-delete' && (d.body as { type: string; data: { id: string }[] }).data.some((r) => r.id === victim && d.body !== first)),
      20_000,
      'the deletion',
    );
    expect((deleted.body as { type: string }).type).toBe('VIRTUAL');
    expect(deleted.verified).toBe(true);
  });

  test('a webhook joining a stream during a run gets the changes that run finds after it came', async () => {
    // Before, the run planned every page for the members it started with: the newcomer missed
    // a change made after its creation, and later runs knew the record (its fingerprint) already.
    const token = `tok-${randomUUID()}`;
    const conn = await kit.connection(token);
    const first = await kit.webhook(conn, '/m/join-1', { event: 'updated', page_max_limit: 5, interval: 0.05 });
    await kit.runsAfter(first, 0);
    const records = live(token, 'crm_contact');
    for (const id of records.slice(0, 20)) kit.provider.updateRecord(token, 'crm_contact', id, { name: `bulk ${id}` });
    slow(token);
    const asked = kit.provider.requests({ token }).length;
    expect((await kit.stack.call('PUT', `/unified/webhook/${first}/trigger`)).status).toBe(200);
    await eventually(() => kit.provider.requests({ token }).length > asked, 10_000, 'the run started');
    await kit.webhook(conn, '/m/join-2', { event: 'updated', page_max_limit: 5, interval: 0.05 });
    const x = records[25] as string;
    kit.provider.updateRecord(token, 'crm_contact', x, { name: 'changed after the second webhook came' });
    await eventually(() => kit.ids('/m/join-1').includes(x), 30_000, 'the change, at the first webhook');
    kit.provider.setBehaviour(token, undefined);
    await eventually(() => kit.ids('/m/join-2').includes(x), 10_000, 'the change, at the webhook that joined');
  });

  test('a webhook moved to another object type during its initial sync gets the new one whole, and no more of the old', async () => {
    // Into a stream that has run before (another webhook's): before, the moved webhook kept its
    // sync "running", that stream's next run (incremental) sent it the few records changed
    // since, as its whole initial sync, and then INITIAL-COMPLETE.
    const token = `tok-${randomUUID()}`;
    const conn = await kit.connection(token);
    const dealHook = await kit.webhook(conn, '/m/deals', { object_type: 'crm_deal' });
    await kit.runsAfter(dealHook, 0);
    slow(token);
    const id = await kit.webhook(conn, '/m/move', { page_max_limit: 5 }, true);
    await eventually(() => kit.bodies('/m/move').some((b) => b.type === 'INITIAL-PARTIAL'), 20_000, 'the first initial page');
    expect((await kit.stack.call('PATCH', `/unified/webhook/${id}`, { object_type: 'crm_deal' })).status).toBe(200);
    const movedAt = kit.bodies('/m/move').length;
    kit.provider.setBehaviour(token, undefined);
    // Every deal, and an INITIAL-COMPLETE received after the last of the other deal pages
    // (the sync's last page waits for those before it). The old stream's INITIAL-COMPLETE may
    // come too, from a last page that was committing as the move committed (empty, or with
    // contacts: allowed once, below), so the first INITIAL-COMPLETE seen is not enough.
    const isContact = (r: Record<string, unknown>) => String(r.id).startsWith('con_');
    const initialDeals = (bodies: ReturnType<VirtualKit['bodies']>) =>
      bodies.filter((b) => b.type.startsWith('INITIAL')).flatMap((b) => b.data.filter((r) => !isContact(r)).map((r) => String(r.id)));
    const ended = () => {
      const since = kit.bodies('/m/move').slice(movedAt);
      const got = new Set(initialDeals(since));
      const lastPartial = since.findLastIndex((b) => b.type === 'INITIAL-PARTIAL' && b.data.some((r) => !isContact(r)));
      const lastComplete = since.findLastIndex((b) => b.type === 'INITIAL-COMPLETE');
      return lastComplete > lastPartial && live(token, 'crm_deal').every((d) => got.has(d));
    };
    await eventually(ended, 30_000, 'every deal, then INITIAL-COMPLETE');
    const after = kit.bodies('/m/move').slice(movedAt);
    // A page of the old stream may have been committing as the move committed: at most one.
    const contactPages = after.filter((b) => b.data.some(isContact));
    expect(contactPages.length).toBeLessThanOrEqual(1);
    expect(initialDeals(after).sort()).toEqual(live(token, 'crm_deal').sort());
  });
});

describe('an initial sync\'s pages', () => {
  test('its last page (INITIAL-COMPLETE) arrives after every other page, though they are committed and claimed together', async () => {
    // Before, the pages of one commit went out side by side, and the last one often came first:
    // a receiver took the sync as ended with pages still to come.
    for (let round = 0; round < 3; round++) {
      const token = `tok-${randomUUID()}`;
      const conn = await kit.connection(token);
      const path = `/m/order-${round}`;
      // Into a stream that reads pages of 100: one source page becomes 10 of this webhook's.
      const first = await kit.webhook(conn, `/m/order-first-${round}`, {});
      await kit.runsAfter(first, 0);
      await kit.webhook(conn, path, { page_max_limit: 3 }, true);
      await eventually(() => kit.bodies(path).some((b) => b.type === 'INITIAL-COMPLETE'), 20_000, 'INITIAL-COMPLETE');
      await new Promise((r) => setTimeout(r, 300)); // a page sent after it would be in by now
      const bodies = kit.bodies(path);
      expect(bodies.at(-1)?.type).toBe('INITIAL-COMPLETE');
      expect(bodies.filter((b) => b.type === 'INITIAL-COMPLETE')).toHaveLength(1);
      expect(bodies.flatMap((b) => b.data.map((r) => String(r.id))).sort()).toEqual(live(token, 'crm_contact').sort());
    }
  });
});

describe('the Truto face', () => {
  test('a virtual webhook activated with PATCH /webhook/{id} {is_active: true} polls again', async () => {
    // Before, its stream (dormant while the webhook was inactive) stayed asleep for ever.
    const token = `tok-${randomUUID()}`;
    const conn = await kit.connection(token);
    const id = await kit.webhook(conn, '/m/truto-enable', { interval: 0.005 });
    await kit.runsAfter(id, 0);
    expect((await kit.stack.call('PATCH', `/webhook/${id}`, { is_active: false })).status).toBe(200);
    const stream = await kit.stack.database.db.selectFrom('webhooks').select('stream_id').where('id', '=', id).executeTakeFirstOrThrow();
    await eventually(
      async () => (await kit.stack.database.db.selectFrom('poll_streams').select('next_run_at').where('id', '=', stream.stream_id!).executeTakeFirstOrThrow()).next_run_at === null,
      15_000,
      'the stream dormant',
    );
    expect((await kit.stack.call('PATCH', `/webhook/${id}`, { is_active: true })).status).toBe(200);
    const x = kit.created(token);
    await eventually(() => kit.ids('/m/truto-enable').includes(x), 15_000, 'a change after the activation');
  });
});

describe('health from two sides', () => {
  test("the source recovering undoes only the source's marks: a webhook whose endpoint fails stays unhealthy, its streak kept", async () => {
    // Before, the source's recovery reset the endpoint's streak too: a webhook answering 500
    // showed healthy, and the clock to its pause started over.
    const token = `tok-${randomUUID()}`;
    const conn = await kit.connection(token);
    const id = await kit.webhook(conn, '/m/dead-endpoint');
    await kit.runsAfter(id, 0);
    kit.stack.receiver.setBehaviour('/m/dead-endpoint', { status: 500 });
    for (let i = 0; i < 3; i++) kit.created(token);
    const row = () => kit.stack.database.db.selectFrom('webhooks').select(['is_healthy', 'consecutive_failures', 'failing_since', 'unhealthy_reason']).where('id', '=', id).executeTakeFirstOrThrow();
    await eventually(async () => !(await row()).is_healthy, 20_000, 'unhealthy from its endpoint');
    kit.provider.setBehaviour(token, { status: 500 });
    await eventually(async () => (await row()).unhealthy_reason?.startsWith('source:'), 20_000, 'unhealthy from its source too');
    kit.provider.setBehaviour(token, undefined);
    await eventually(async () => (await row()).unhealthy_reason === null, 20_000, "the source's mark gone");
    const after = await row();
    expect(after.is_healthy).toBe(false);
    expect(after.consecutive_failures).toBeGreaterThanOrEqual(3);
    expect(after.failing_since).not.toBeNull();
    kit.stack.receiver.setBehaviour('/m/dead-endpoint', undefined);
  });
});
