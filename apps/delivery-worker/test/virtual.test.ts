/**
 * Virtual webhooks end to end: the API and worker as processes, the mock provider (a
 * third-party list API) and the mock receiver in-process, intervals of a few hundred
 * milliseconds.
 */
import { randomUUID } from 'node:crypto';
import { startProvider, type MockProvider } from '@hookpost/mock-provider';
import type { ReceivedDelivery } from '@hookpost/mock-receiver';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { eventually, startStack, type Stack } from './stack.js';

/** Minutes: 0.005 = 300 ms. */
const FAST = 0.005;

const VIRTUAL_ENV = {
  MIN_INTERVAL_MINUTES: '0.001',
  POLL_JITTER: '0',
  POLL_OVERLAP_MS: '2000',
  POLL_CONNECTION_RPS: '200',
  POLL_FAILURE_THRESHOLD: '2',
  POLL_AUTH_RETRY_MS: '300000',
  POLL_LEASE_MS: '3000',
  POLL_REQUEST_TIMEOUT_MS: '5000',
};

let stack: Stack;
let provider: MockProvider;

beforeAll(async () => {
  [stack, provider] = await Promise.all([startStack({ env: VIRTUAL_ENV }), startProvider('127.0.0.1', 0, { records: 5 })]);
});
afterAll(async () => {
  await stack?.close();
  await provider?.close();
});

interface Body {
  type: string;
  data: Record<string, unknown>[];
}

const bodies = (path: string): Body[] => stack.receiver.deliveries().filter((d) => d.path === path).map((d) => d.body as Body);
const ids = (path: string, type?: string): string[] =>
  bodies(path)
    .filter((b) => type === undefined || b.type === type)
    .flatMap((b) => b.data.map((r) => String(r.id)));

async function connection(token: string): Promise<string> {
  const res = await stack.call('POST', '/unified/connection', {
    integration_type: 'mockcrm',
    categories: ['crm'],
    permissions: [],
    auth: { api_url: provider.url, access_token: token },
  });
  expect(res.status).toBe(200);
  return res.body.id as string;
}

async function webhook(connectionId: string, path: string, extra: Record<string, unknown> = {}, includeAll = false): Promise<string> {
  const res = await stack.call('POST', `/unified/webhook${includeAll ? '?include_all=true' : ''}`, {
    connection_id: connectionId,
    object_type: 'crm_contact',
    event: 'created',
    hook_url: `${stack.receiver.url}${path}`,
    interval: FAST,
    ...extra,
  });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  stack.receiver.addSecret((await stack.call('GET', `/v1/webhooks/${res.body.id}/secret`)).body.secret);
  return res.body.id as string;
}

interface Run {
  id: string;
  trigger: string;
  status: string;
  started_at: string;
  error_class?: string;
  error?: string;
  changes?: number;
}

async function runs(webhookId: string): Promise<Run[]> {
  const res = await stack.call('GET', `/unified/webhook/${webhookId}`);
  return ((res.body.runs ?? []) as string[]).map((l) => JSON.parse(l) as Run);
}

/** Waits for `n` runs that started after `since` to finish (so everything before `since` was seen). */
async function runsAfter(webhookId: string, since: number, n = 1, status = 'completed'): Promise<Run[]> {
  return eventually(async () => {
    const done = (await runs(webhookId)).filter((r) => r.status === status && Date.parse(r.started_at) > since);
    return done.length >= n ? done : undefined;
  }, 20_000, `${n} ${status} run(s) of ${webhookId}`);
}

function created(token: string, fields: Record<string, unknown> = {}): string {
  const r = provider.createRecord(token, 'crm_contact', { name: `Person ${randomUUID().slice(0, 6)}`, ...fields });
  if (!r.ok) throw new Error(r.message);
  return r.record.id;
}

describe('change detection', () => {
  test('created, updated and deleted records reach exactly the webhooks that asked; unchanged ones reach nobody; one poll serves all', async () => {
    const token = `tok-${randomUUID()}`;
    const conn = await connection(token);
    const seeded = provider.records(token, 'crm_contact');
    expect(seeded.length).toBe(5);
    const [a, b, c] = await Promise.all([
      webhook(conn, '/cud/created', { event: 'created' }),
      webhook(conn, '/cud/updated', { event: 'updated' }),
      webhook(conn, '/cud/deleted', { event: 'deleted' }),
    ]);
    await runsAfter(a, Date.now());

    const x = created(token);
    const [updated, touched, deleted] = seeded as [(typeof seeded)[0], (typeof seeded)[0], (typeof seeded)[0]];
    expect(provider.updateRecord(token, 'crm_contact', updated.id, { type: 'CUSTOMER-X' }).ok).toBe(true);
    expect(provider.touchRecord(token, 'crm_contact', touched.id).ok).toBe(true);
    expect(provider.deleteRecord(token, 'crm_contact', deleted.id).ok).toBe(true);
    const changedAt = Date.now();

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
    for (const d of stack.receiver.deliveries().filter((d: ReceivedDelivery) => d.path.startsWith('/cud/'))) expect(d.verified).toBe(true);

    // One stream: the three webhooks show the same runs, and the source saw one request per run.
    const [ra, rb, rc] = await Promise.all([runs(a), runs(b), runs(c)]);
    const finished = (rs: Run[]) => rs.filter((r) => r.status !== 'running').map((r) => r.id);
    expect(finished(rb).slice(0, 3)).toEqual(finished(ra).slice(0, 3));
    expect(finished(rc).slice(0, 3)).toEqual(finished(ra).slice(0, 3));
    const afterChange = provider.requests({ token }).filter((r) => Date.parse(r.at) > changedAt);
    const runsSince = (await runs(a)).filter((r) => r.status === 'completed' && Date.parse(r.started_at) > changedAt);
    expect(afterChange.length).toBeLessThanOrEqual(runsSince.length + 1);
    expect(runsSince.some((r) => (r.changes ?? 0) >= 3)).toBe(true);
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
    const reqs = provider.requests({ token });
    expect(reqs.length).toBeGreaterThan(0);
    for (const r of reqs) expect(r.query.filter).toEqual({ owner_id: 'owner-x' });
    expect(reqs.at(-1)?.query.fields?.split(',').sort()).toEqual(['name', 'owner_id']);
  });

  test('include_all sends the history as INITIAL-PARTIAL pages then INITIAL-COMPLETE, then only increments', async () => {
    const token = `tok-${randomUUID()}`;
    const conn = await connection(token);
    // 5 seeded + 20 more = 25 live records, and one tombstone that is not history to send.
    const extra = Array.from({ length: 21 }, () => created(token));
    expect(provider.deleteRecord(token, 'crm_contact', extra[0] as string).ok).toBe(true);
    const live = provider.records(token, 'crm_contact').filter((r) => !r.deleted_at).map((r) => r.id);
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
    expect((await stack.call('PUT', `/unified/webhook/${id}/trigger`)).status).toBe(200);
    await eventually(() => ids('/trigger').includes(x), 10_000, 'the triggered run');
    const rs = await runs(id);
    expect(rs.find((r) => r.status === 'completed')?.trigger).toBe('manual');
    // A newly created webhook's stream baseline is its creation: x (created after) is news.
    expect(ids('/trigger')).toEqual([x]);
  });
});
