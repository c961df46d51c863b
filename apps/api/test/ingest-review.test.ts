/**
 * Event ingest (`POST /v1/events`, `POST /v1/events/batch`): idempotency by key and by event
 * id, group commits (many requests in one transaction, several transactions in flight),
 * and bad input. HTTP cases go through the real API; group-commit cases drive the
 * EventIngestor directly, so that which requests share a transaction is deterministic
 * (every `submit` made in one tick joins one group; `maxEvents: 1` gives each its own
 * transaction, all in flight at once).
 */
import { sql, type Kysely } from 'kysely';
import { createLogger } from '@hookpost/runtime';
import { whenAnswered } from '@hookpost/testkit';
import type { Database } from '@hookpost/db';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventIngestor, type IngestAnswer, type IngestRequest } from '../src/services/ingest.js';
import { client, createConnection, newWorkspace, startTestApi, type TestApi, type TestWorkspace } from './helpers.js';

let api: TestApi;
beforeAll(async () => {
  api = await startTestApi();
});
afterAll(async () => api.close());

async function count(table: 'events' | 'deliveries' | 'idempotency_keys', workspaceId: string): Promise<number> {
  const r = await sql<{ n: string }>`select count(*) as n from ${sql.table(table)} where workspace_id = ${workspaceId}`.execute(api.db);
  return Number(r.rows[0]?.n);
}

async function counts(workspaceId: string) {
  return { events: await count('events', workspaceId), deliveries: await count('deliveries', workspaceId), keys: await count('idempotency_keys', workspaceId) };
}

/** A workspace with one workspace-wide Truto webhook (every event type): each event fans out to one delivery. */
async function workspaceWithWebhook(): Promise<TestWorkspace & { call: ReturnType<typeof client> }> {
  const ws = await newWorkspace(api.db);
  const call = client(api.url, ws.key);
  const res = await call('POST', '/webhook', { target_url: 'http://127.0.0.1:9/hook' });
  expect(res.status).toBe(201);
  return { ...ws, call };
}

const ev = (extra: Record<string, unknown> = {}) => ({ type: 'record:created', data: { n: 1 }, ...extra });

describe('listing deliveries by time', () => {
  it('since/until take a date or a date-time with offset, whatever the offset, and bound created_at', async () => {
    const ws = await newWorkspace(api.db);
    const call = client(api.url, ws.key);
    const hook = await call('POST', '/webhook', { target_url: 'http://127.0.0.1:9/hook' });
    expect((await call('POST', '/v1/events', ev())).status).toBe(202);
    const list = async (q: string) => {
      const r = await call('GET', `/v1/webhooks/${hook.body.id}/deliveries?${q}`);
      expect(r.status).toBe(200);
      return (r.body.result as unknown[]).length;
    };
    const at = (ms: number, offsetHours = 0) => {
      const local = new Date(Date.now() + ms + offsetHours * 3_600_000).toISOString().slice(0, 19);
      return encodeURIComponent(offsetHours === 0 ? `${local}Z` : `${local}${offsetHours > 0 ? '+' : '-'}${String(Math.abs(offsetHours)).padStart(2, '0')}:00`);
    };
    expect(await list(`since=${at(-60_000)}`)).toBe(1);
    expect(await list(`since=${at(-60_000, 5)}`)).toBe(1); // the same instant, written at +05:00
    expect(await list(`since=${at(60_000, -7)}`)).toBe(0);
    expect(await list(`until=${at(-60_000)}`)).toBe(0);
    expect(await list(`since=2000-01-01&until=${at(60_000, 3)}`)).toBe(1);
  });
});

describe('Idempotency-Key over HTTP', () => {
  it('a repeat answers exactly as the first did (status, body, delivery count) and creates nothing', async () => {
    const ws = await workspaceWithWebhook();
    const first = await ws.call('POST', '/v1/events', ev(), { 'idempotency-key': 'k1' });
    expect(first.status).toBe(202);
    expect(first.body.deliveries).toBe(1);
    const before = await counts(ws.workspaceId);
    const repeat = await ws.call('POST', '/v1/events', ev(), { 'idempotency-key': 'k1' });
    expect(repeat.status).toBe(202);
    expect(repeat.body).toEqual(first.body);
    expect(await counts(ws.workspaceId)).toEqual(before);
  });

  it('the same key with a different body is a 409 naming the header, and creates nothing', async () => {
    const ws = await workspaceWithWebhook();
    expect((await ws.call('POST', '/v1/events', ev(), { 'idempotency-key': 'k1' })).status).toBe(202);
    const before = await counts(ws.workspaceId);
    const other = await ws.call('POST', '/v1/events', ev({ data: { n: 2 } }), { 'idempotency-key': 'k1' });
    expect(other.status).toBe(409);
    expect(other.body.error.field).toBe('header.idempotency-key');
    expect(other.body.error.request_id).toBe(other.headers.get('x-request-id')); // as every other error
    expect(await counts(ws.workspaceId)).toEqual(before);
  });

  it('the same key and body from a key of another environment is a 409, not the other environment\'s answer', async () => {
    const ws = await workspaceWithWebhook();
    const staging = (await ws.call('POST', '/v1/environments', { name: 'Staging' })).body;
    const stagingCall = client(api.url, (await ws.call('POST', '/v1/api-keys', { name: 'staging', environment_id: staging.id })).body.key);
    const first = await ws.call('POST', '/v1/events', ev(), { 'idempotency-key': 'k-env' });
    expect(first.status).toBe(202);
    const fromStaging = await stagingCall('POST', '/v1/events', ev(), { 'idempotency-key': 'k-env' });
    expect(fromStaging.status).toBe(409); // before: 202 with the Production event's id
    expect(fromStaging.body.error.field).toBe('header.idempotency-key');
    expect((await ws.call('POST', '/v1/events', ev(), { 'idempotency-key': 'k-env' })).body).toEqual(first.body);
  });

  it('a key on the batch route: the repeat gets the first answer', async () => {
    const ws = await workspaceWithWebhook();
    const body = { events: [ev({ id: 'a' }), ev({ id: 'b' })] };
    const first = await ws.call('POST', '/v1/events/batch', body, { 'idempotency-key': 'batch-1' });
    expect(first.status).toBe(202);
    const before = await counts(ws.workspaceId);
    const repeat = await ws.call('POST', '/v1/events/batch', body, { 'idempotency-key': 'batch-1' });
    expect(repeat.status).toBe(202);
    expect(repeat.body).toEqual(first.body);
    expect(await counts(ws.workspaceId)).toEqual(before);
  });

  it('a key used on the single route, then on the batch route with the same event, never answers in the other route\'s shape', async () => {
    const ws = await workspaceWithWebhook();
    const single = await ws.call('POST', '/v1/events', ev(), { 'idempotency-key': 'both-routes' });
    expect(single.status).toBe(202);
    const before = await counts(ws.workspaceId);
    const batch = await ws.call('POST', '/v1/events/batch', { events: [ev()] }, { 'idempotency-key': 'both-routes' });
    // A different request (another route, another body): a 409, not the single route's body.
    expect(batch.status).toBe(409);
    expect(batch.body.error.field).toBe('header.idempotency-key');
    expect(await counts(ws.workspaceId)).toEqual(before);
  });

  it('keys are per workspace: the same key in two workspaces makes two events', async () => {
    const a = await workspaceWithWebhook();
    const b = await workspaceWithWebhook();
    const ra = await a.call('POST', '/v1/events', ev(), { 'idempotency-key': 'shared' });
    const rb = await b.call('POST', '/v1/events', ev({ data: { other: true } }), { 'idempotency-key': 'shared' });
    expect(ra.status).toBe(202);
    expect(rb.status).toBe(202);
    expect(rb.body.id).not.toBe(ra.body.id);
    expect(await count('events', a.workspaceId)).toBe(1);
    expect(await count('events', b.workspaceId)).toBe(1);
  });

  it('concurrent requests with one key: one event, every answer the same', async () => {
    const ws = await workspaceWithWebhook();
    const answers = await Promise.all(Array.from({ length: 20 }, () => ws.call('POST', '/v1/events', ev(), { 'idempotency-key': 'race' })));
    expect(answers.every((r) => r.status === 202)).toBe(true);
    // Equal as JSON (a replayed body comes back from jsonb, whose key order is its own).
    for (const r of answers) expect(r.body).toEqual(answers[0]?.body);
    expect(await counts(ws.workspaceId)).toEqual({ events: 1, deliveries: 1, keys: 1 });
  });

  it.each([
    ['255 characters', 'k'.repeat(255), 202],
    ['256 characters', 'k'.repeat(256), 400],
    ['latin-1 characters', 'clé-ñ-ü', 202],
  ])('a key of %s', async (_name, key, status) => {
    const ws = await workspaceWithWebhook();
    const r = await ws.call('POST', '/v1/events', ev(), { 'idempotency-key': key });
    expect(r.status).toBe(status);
    if (status === 400) {
      expect(r.body.error.field).toBe('header.idempotency-key');
      expect(await counts(ws.workspaceId)).toEqual({ events: 0, deliveries: 0, keys: 0 });
    } else {
      expect((await ws.call('POST', '/v1/events', ev(), { 'idempotency-key': key })).body).toEqual(r.body);
      expect(await count('events', ws.workspaceId)).toBe(1);
    }
  });
});

describe('event id over HTTP', () => {
  it('a repeat (by Idempotency-Key or by event id) after its connection was deleted answers as the first did, not a 400', async () => {
    // Before, the references were checked first: the repeat of an accepted, delivered event
    // was a 400 "no connection", which a client taking 4xx as final recorded as failed.
    const ws = await workspaceWithWebhook();
    const conn = await createConnection(ws.call);
    const keyed = await ws.call('POST', '/v1/events', ev({ connection_id: conn }), { 'idempotency-key': 'k-conn' });
    const byId = await ws.call('POST', '/v1/events', ev({ connection_id: conn, id: 'contact-9:v1' }));
    expect([keyed.status, byId.status]).toEqual([202, 202]);
    expect((await ws.call('DELETE', `/unified/connection/${conn}`)).status).toBe(200);
    const before = await counts(ws.workspaceId);
    expect(await ws.call('POST', '/v1/events', ev({ connection_id: conn }), { 'idempotency-key': 'k-conn' })).toMatchObject({ status: 202, body: keyed.body });
    expect(await ws.call('POST', '/v1/events', ev({ connection_id: conn, id: 'contact-9:v1' }))).toMatchObject({ status: 202, body: { ...byId.body, duplicate: true } });
    expect(await counts(ws.workspaceId)).toEqual(before);
    // Not a repeat: still refused, naming the field.
    const fresh = await ws.call('POST', '/v1/events', ev({ connection_id: conn, id: 'contact-9:v2' }));
    expect(fresh).toMatchObject({ status: 400, body: { error: { field: 'body.connection_id' } } });
  });

  it('the same id twice in one batch: one event, the repeat answers with the first', async () => {
    const ws = await workspaceWithWebhook();
    const r = await ws.call('POST', '/v1/events/batch', { events: [ev({ id: 'x', data: { v: 1 } }), ev({ id: 'y' }), ev({ id: 'x', data: { v: 2 } })] });
    expect(r.status).toBe(202);
    const [x1, y, x2] = r.body.events;
    expect(x1).toMatchObject({ external_id: 'x', duplicate: false, deliveries: 1 });
    expect(y).toMatchObject({ external_id: 'y', duplicate: false, deliveries: 1 });
    expect(x2).toEqual({ ...x1, duplicate: true });
    expect(await counts(ws.workspaceId)).toEqual({ events: 2, deliveries: 2, keys: 0 });
    // The first occurrence is the one stored.
    const stored = await sql<{ data: unknown }>`select data from events where workspace_id = ${ws.workspaceId} and external_id = 'x'`.execute(api.db);
    expect(stored.rows).toEqual([{ data: { v: 1 } }]);
  });

  it('an id sent singly, then in a batch: the batch entry is a duplicate with the first id and delivery count', async () => {
    const ws = await workspaceWithWebhook();
    const single = await ws.call('POST', '/v1/events', ev({ id: 'evt-1' }));
    expect(single.body).toMatchObject({ external_id: 'evt-1', duplicate: false, deliveries: 1 });
    const batch = await ws.call('POST', '/v1/events/batch', { events: [ev({ id: 'evt-2' }), ev({ id: 'evt-1' })] });
    expect(batch.status).toBe(202);
    expect(batch.body.events[1]).toEqual({ ...single.body, duplicate: true });
    expect(await counts(ws.workspaceId)).toEqual({ events: 2, deliveries: 2, keys: 0 });
    const again = await ws.call('POST', '/v1/events', ev({ id: 'evt-2' }));
    expect(again.body).toEqual({ ...batch.body.events[0], duplicate: true });
  });

  it('ids are per workspace', async () => {
    const a = await workspaceWithWebhook();
    const b = await workspaceWithWebhook();
    const ra = await a.call('POST', '/v1/events', ev({ id: 'same' }));
    const rb = await b.call('POST', '/v1/events', ev({ id: 'same' }));
    expect(ra.body.duplicate).toBe(false);
    expect(rb.body.duplicate).toBe(false);
    expect(rb.body.id).not.toBe(ra.body.id);
  });

  it('a 255-character unicode id is stored and de-duplicated', async () => {
    const ws = await workspaceWithWebhook();
    const id = '😀'.repeat(127) + 'é'; // 255 UTF-16 code units (zod counts those)
    expect(id.length).toBe(255);
    const first = await ws.call('POST', '/v1/events', ev({ id }));
    expect(first.status).toBe(202);
    expect(first.body.external_id).toBe(id);
    const second = await ws.call('POST', '/v1/events', ev({ id }));
    expect(second.body).toEqual({ ...first.body, duplicate: true });
  });
});

describe('bad input: a 4xx naming the field, nothing stored', () => {
  type Case = [name: string, path: string, body: unknown, status: number, field: string | undefined, headers?: Record<string, string>];
  const many = (n: number) => ({ events: Array.from({ length: n }, () => ev()) });
  const cases: Case[] = [
    ['an empty id', '/v1/events', ev({ id: '' }), 400, 'body.id'],
    ['an id of 256 characters', '/v1/events', ev({ id: 'i'.repeat(256) }), 400, 'body.id'],
    ['an empty Idempotency-Key', '/v1/events', ev(), 400, 'header.idempotency-key', { 'idempotency-key': '' }],
    ['data an array', '/v1/events', ev({ data: [1, 2] }), 400, 'body.data'],
    ['data a string', '/v1/events', ev({ data: 'x' }), 400, 'body.data'],
    ['data null', '/v1/events', ev({ data: null }), 400, 'body.data'],
    ['data missing', '/v1/events', { type: 'record:created' }, 400, 'body.data'],
    ['an empty type', '/v1/events', ev({ type: '' }), 400, 'body.type'],
    ['a non-UUID connection_id', '/v1/events', ev({ connection_id: 'conn_1' }), 400, 'body.connection_id'],
    ['data not an object, in a batch', '/v1/events/batch', { events: [ev(), ev({ data: 5 })] }, 400, 'body.events.1.data'],
    ['a batch of 1001', '/v1/events/batch', many(1001), 400, 'body.events'],
    ['events not an array', '/v1/events/batch', { events: ev() }, 400, 'body.events'],
    // A body that is not declared JSON is refused as such, naming the header (it was a 400
    // about body.type, the first required field of what then read as an empty body).
    ['no content type', '/v1/events', JSON.stringify(ev()), 415, 'header.content-type', { 'content-type': '' }],
    ['text/plain', '/v1/events', JSON.stringify(ev()), 415, 'header.content-type', { 'content-type': 'text/plain' }],
    ['form encoding (curl -d)', '/v1/events', 'type=record:created', 415, 'header.content-type', { 'content-type': 'application/x-www-form-urlencoded' }],
    ['text/plain, batch', '/v1/events/batch', JSON.stringify({ events: [ev()] }), 415, 'header.content-type', { 'content-type': 'text/plain' }],
    ['a body over the cap', '/v1/events', ev({ data: { big: 'x'.repeat(2_000_000) } }), 413, 'body'],
    ['a batch body over its cap', '/v1/events/batch', { events: [ev({ data: { big: 'x'.repeat(17_000_000) } })] }, 413, 'body'],
  ];
  it.each(cases)('%s', async (_name, path, body, status, field, headers = {}) => {
    const ws = await workspaceWithWebhook();
    const r = await ws.call('POST', path, body, headers);
    expect(r.status).toBe(status);
    expect(r.body.error).toBeDefined();
    if (field !== undefined) expect(r.body.error.field).toBe(field);
    expect(await counts(ws.workspaceId)).toEqual({ events: 0, deliveries: 0, keys: 0 });
  });

  it('JSON under another name is JSON: a charset, a +json type', async () => {
    const ws = await workspaceWithWebhook();
    expect((await ws.call('POST', '/v1/events', JSON.stringify(ev()), { 'content-type': 'application/json; charset=utf-8' })).status).toBe(202);
    expect((await ws.call('POST', '/v1/events', JSON.stringify(ev()), { 'content-type': 'application/vnd.hookpost+json' })).status).toBe(202);
    const bodyless = await ws.call('POST', '/v1/events', undefined, { 'content-type': 'text/plain' });
    expect(bodyless.status).toBe(400); // no body at all: the missing fields, not the type
    // A leading byte order mark is allowed, on the fast path as on Express's.
    expect((await ws.call('POST', '/v1/events', `\ufeff${JSON.stringify(ev())}`)).status).toBe(202);
  });

  it('JSON in another encoding than UTF-8 is a 415 naming the header, and stores nothing', async () => {
    // Before: UTF-16 was parsed, an escaped NUL in it passed the storable-text checks (which
    // read the raw bytes as UTF-8) and Postgres refused the statement: a 500.
    const ws = await workspaceWithWebhook();
    const body = Buffer.from(JSON.stringify(ev({ data: { name: 'a\u0000b' } })), 'utf16le');
    // Labelled so but in fact UTF-8: the same 415 (before, the parser decoded it as UTF-16 first: a 400 malformed_json).
    const mislabelled = Buffer.from(JSON.stringify(ev()), 'utf8');
    for (const path of ['/v1/events', '/webhook', '/v1/events/batch']) {
      for (const [b, charset] of [[body, 'utf-16le'], [mislabelled, 'utf-16'], [mislabelled, 'utf-32']] as const) {
        const res = await fetch(`${api.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${ws.key}`, 'content-type': `application/json; charset=${charset}` }, body: b });
        expect(res.status, `${path} ${charset}`).toBe(415);
        expect(((await res.json()) as { error: { field: string } }).error.field).toBe('header.content-type');
      }
    }
    expect(await counts(ws.workspaceId)).toEqual({ events: 0, deliveries: 0, keys: 0 });
  });

  it('a batch of exactly 1000 is accepted', async () => {
    const ws = await workspaceWithWebhook();
    const r = await ws.call('POST', '/v1/events/batch', many(1000));
    expect(r.status).toBe(202);
    expect(r.body.events).toHaveLength(1000);
    expect(await counts(ws.workspaceId)).toEqual({ events: 1000, deliveries: 1000, keys: 0 });
  });

  it("another workspace's connection is a 400 at the event's connection_id (single and batch)", async () => {
    const other = await workspaceWithWebhook();
    const theirs = await createConnection(other.call);
    const ws = await workspaceWithWebhook();
    const one = await ws.call('POST', '/v1/events', ev({ connection_id: theirs }), { 'idempotency-key': 'k' });
    expect(one.status).toBe(400);
    expect(one.body.error.field).toBe('body.connection_id');
    const batch = await ws.call('POST', '/v1/events/batch', { events: [ev(), ev({ connection_id: theirs })] });
    expect(batch.status).toBe(400);
    expect(batch.body.error.field).toBe('body.events.1.connection_id');
    expect(await counts(ws.workspaceId)).toEqual({ events: 0, deliveries: 0, keys: 0 });
    expect(await counts(other.workspaceId)).toEqual({ events: 0, deliveries: 0, keys: 0 });
  });

  it('a connection just deleted is a 400 at once (single and batch), not accepted and fanned out for seconds', async () => {
    // Before, the API kept the connections it had read for 5 s: events naming one deleted
    // meanwhile were accepted and went to the workspace's webhooks for all connections.
    const ws = await workspaceWithWebhook();
    const conn = await createConnection(ws.call);
    const first = await ws.call('POST', '/v1/events', ev({ connection_id: conn }));
    expect(first.status).toBe(202);
    expect(first.body.deliveries).toBe(1);
    expect((await ws.call('DELETE', `/unified/connection/${conn}`)).status).toBe(200);
    const one = await ws.call('POST', '/v1/events', ev({ connection_id: conn }));
    expect(one.status).toBe(400);
    expect(one.body.error.field).toBe('body.connection_id');
    const batch = await ws.call('POST', '/v1/events/batch', { events: [ev(), ev({ connection_id: conn })] });
    expect(batch.status).toBe(400);
    expect(batch.body.error.field).toBe('body.events.1.connection_id');
    expect(await counts(ws.workspaceId)).toEqual({ events: 1, deliveries: 1, keys: 0 });
  });
});

describe('references as the caller writes them', () => {
  it('its own connection and environment ids in capitals are its own (single and batch, both paths)', async () => {
    // Before, they were compared as text with the database's lower-case ids: a 400.
    const ws = await workspaceWithWebhook();
    const conn = await createConnection(ws.call);
    const env = ws.environmentId.toUpperCase();
    for (const path of ['/v1/events', '/v1/events?via=express']) {
      const one = await ws.call('POST', path, ev({ connection_id: conn.toUpperCase(), environment_id: env }));
      expect(one.status, JSON.stringify(one.body)).toBe(202);
    }
    expect((await ws.call('POST', '/v1/events/batch', { events: [ev({ connection_id: conn.toUpperCase() })] })).status).toBe(202);
    const stored = await api.db.selectFrom('events').select(['connection_id', 'environment_id']).where('workspace_id', '=', ws.workspaceId).execute();
    expect(stored).toHaveLength(3);
    expect(stored.every((e) => e.connection_id === conn && e.environment_id === ws.environmentId)).toBe(true);
  });

  it('an environment of a workspace with more than 50,000 is accepted (the cache of environments emptied after its read, not before)', async () => {
    const ws = await workspaceWithWebhook();
    await sql`insert into environments (workspace_id, name) select ${ws.workspaceId}, 'env-' || g from generate_series(1, 50001) g`.execute(api.db);
    const env = await api.db.selectFrom('environments').select('id').where('workspace_id', '=', ws.workspaceId).where('name', '=', 'env-77').executeTakeFirstOrThrow();
    const res = await ws.call('POST', '/v1/events', ev({ environment_id: env.id }));
    expect(res.status, JSON.stringify(res.body)).toBe(202);
  });
});

describe('filters', () => {
  it('a filter named __proto__ is a 400 naming it, not dropped (the webhook then got every event)', async () => {
    const ws = await newWorkspace(api.db);
    const call = client(api.url, ws.key);
    const conn = await createConnection(call);
    const body = `{"connection_id":"${conn}","object_type":"crm_contact","event":"created","hook_url":"http://127.0.0.1:9/p","filters":{"__proto__":"tenant-a","owner":"ann"}}`;
    const res = await call('POST', '/unified/webhook', body);
    expect(res.status).toBe(400);
    expect(res.body.error.field).toBe('body.filters.__proto__');
    expect(await api.db.selectFrom('webhooks').select('id').where('workspace_id', '=', ws.workspaceId).execute()).toEqual([]);
  });
});

describe('matching in SQL', () => {
  it('connection, object type, event type and filters (string equality on record fields)', async () => {
    const ws = await newWorkspace(api.db);
    const call = client(api.url, ws.key);
    const conn = await createConnection(call);
    const hook = await call('POST', '/unified/webhook', {
      connection_id: conn,
      object_type: 'crm_contact',
      event: 'updated',
      hook_url: 'http://127.0.0.1:9/h',
      filters: { owner: 'ann', n: '7' },
    });
    expect(hook.status).toBe(200);
    const send = async (e: Record<string, unknown>) => (await call('POST', '/v1/events', { type: 'record:updated', object_type: 'crm_contact', connection_id: conn, ...e })).body.deliveries;
    expect(await send({ data: { owner: 'ann', n: '7', x: 1 } })).toBe(1);
    expect(await send({ data: { owner: 'ann', n: 7 } })).toBe(1); // compared as text
    expect(await send({ data: { owner: 'bob', n: '7' } })).toBe(0);
    expect(await send({ data: { owner: 'ann' } })).toBe(0);
    expect(await send({ type: 'record:created', data: { owner: 'ann', n: '7' } })).toBe(0);
    expect(await send({ object_type: 'crm_company', data: { owner: 'ann', n: '7' } })).toBe(0);
    expect(await send({ connection_id: undefined, data: { owner: 'ann', n: '7' } })).toBe(0);
  });
});

describe('an event naming a connection of another environment', () => {
  it('is stored in the connection\'s environment when neither the event nor the key names one, and reaches its webhooks', async () => {
    const ws = await newWorkspace(api.db);
    const call = client(api.url, ws.key);
    const staging = (await call('POST', '/v1/environments', { name: 'Staging' })).body;
    const stagingKey = (await call('POST', '/v1/api-keys', { name: 'staging', environment_id: staging.id })).body.key;
    const inStaging = client(api.url, stagingKey);
    const conn = await createConnection(inStaging);
    const hook = await inStaging('POST', '/unified/webhook', { connection_id: conn, object_type: 'crm_contact', event: 'updated', hook_url: 'http://127.0.0.1:9/staging' });
    expect(hook.status).toBe(200);
    const event = { type: 'record:updated', object_type: 'crm_contact', connection_id: conn, data: { id: 'c1' } };
    // A workspace-wide key: before, the event went to the default environment (Production)
    // with its Staging connection, and matched nothing.
    const sent = await call('POST', '/v1/events', event);
    expect(sent.status).toBe(202);
    expect(sent.body.deliveries).toBe(1);
    const row = await api.db.selectFrom('events').select('environment_id').where('id', '=', sent.body.id).executeTakeFirstOrThrow();
    expect(row.environment_id).toBe(staging.id);
  });

  it('is a 400 naming connection_id when the event or the key names another environment, and stores nothing', async () => {
    const ws = await newWorkspace(api.db);
    const call = client(api.url, ws.key);
    const staging = (await call('POST', '/v1/environments', { name: 'Staging' })).body;
    const stagingKey = (await call('POST', '/v1/api-keys', { name: 'staging', environment_id: staging.id })).body.key;
    const prodConn = await createConnection(call);
    const production = (await call('GET', '/v1/environments')).body.find((e: { name: string }) => e.name === 'Production');
    const stagingConn = await createConnection(client(api.url, stagingKey));
    const cases: [ReturnType<typeof client>, Record<string, unknown>][] = [
      [client(api.url, stagingKey), { connection_id: prodConn }], // the key is Staging's
      [call, { connection_id: stagingConn, environment_id: production.id }], // the event names Production
    ];
    for (const [caller, extra] of cases) {
      const res = await caller('POST', '/v1/events', { type: 'record:updated', data: {}, ...extra });
      expect(res.status, JSON.stringify(extra)).toBe(400);
      expect(res.body.error.field).toBe('body.connection_id');
    }
    expect(await count('events', ws.workspaceId)).toBe(0);
  });
});

describe('group commit (EventIngestor)', () => {
  const logger = createLogger('ingest-review', 'silent');
  const ingestor = (options: Partial<{ windowMs: number; maxEvents: number; maxInFlight: number; maxBytes: number }> = {}, db: Kysely<Database> = api.db) =>
    new EventIngestor(db, logger, { windowMs: 0, maxEvents: 500, maxInFlight: 4, ...options });
  const req = (ws: TestWorkspace, events: Record<string, unknown>[], idempotencyKey?: string, single = events.length === 1): IngestRequest => ({
    scope: { workspaceId: ws.workspaceId, environmentId: null },
    events: events as IngestRequest['events'],
    single,
    ...(idempotencyKey !== undefined ? { idempotencyKey } : {}),
  });
  const settle = (ps: Promise<IngestAnswer>[]) => Promise.allSettled(ps);

  it('a group closes at its byte budget as at its event count: large bodies go in several groups, all accepted', async () => {
    // Before, only events were counted: ~280 concurrent 1 MB events exceeded jsonb's 256 MB
    // as one group, failed, and were committed one by one.
    const ws = await workspaceWithWebhook();
    let groups = 0;
    const counting = api.db.withPlugin(whenAnswered('insert into events', async () => void groups++, 1_000));
    const g = ingestor({ maxInFlight: 1, maxBytes: 2_500 }, counting);
    const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => g.submit({ ...req(ws, [ev({ data: { i, pad: 'x'.repeat(900) } })]), bodyBytes: 1_000 })));
    expect(answers.every((a) => a.status === 202)).toBe(true);
    // Groups of two (a third would pass 2,500 bytes); without the budget, one group of ten.
    expect(groups).toBe(5);
    expect(await counts(ws.workspaceId)).toMatchObject({ events: 10, deliveries: 10 });
  });

  it('one key twice in one group: one event, both the same answer', async () => {
    const ws = await workspaceWithWebhook();
    const g = ingestor();
    const [a, b] = await Promise.all([g.submit(req(ws, [ev()], 'k')), g.submit(req(ws, [ev()], 'k'))]);
    expect(a.status).toBe(202);
    expect(b).toEqual(a);
    expect(await counts(ws.workspaceId)).toEqual({ events: 1, deliveries: 1, keys: 1 });
  });

  it('one key twice in one group with different bodies: the second is a 409', async () => {
    const ws = await workspaceWithWebhook();
    const g = ingestor();
    const [a, b] = await Promise.all([g.submit(req(ws, [ev()], 'k')), g.submit(req(ws, [ev({ data: { n: 2 } })], 'k'))]);
    expect(a.status).toBe(202);
    expect(b.status).toBe(409);
    expect(await counts(ws.workspaceId)).toEqual({ events: 1, deliveries: 1, keys: 1 });
  });

  it('a stored key, repeated in one group first with another body then with the same: the matching repeat gets the stored answer', async () => {
    const ws = await workspaceWithWebhook();
    const g = ingestor();
    const first = await g.submit(req(ws, [ev()], 'k'));
    expect(first.status).toBe(202);
    const [mismatch, repeat] = await Promise.all([g.submit(req(ws, [ev({ data: { n: 2 } })], 'k')), g.submit(req(ws, [ev()], 'k'))]);
    expect(mismatch.status).toBe(409);
    expect(repeat).toEqual(first);
    expect(await counts(ws.workspaceId)).toEqual({ events: 1, deliveries: 1, keys: 1 });
  });

  it('one key in two transactions in flight at once: one event, the same answer', async () => {
    const ws = await workspaceWithWebhook();
    const g = ingestor({ maxEvents: 1 });
    const answers = await Promise.all(Array.from({ length: 4 }, () => g.submit(req(ws, [ev()], 'k'))));
    expect(answers.every((a) => a.status === 202)).toBe(true);
    for (const a of answers) expect(a.body).toEqual(answers[0]?.body);
    expect(await counts(ws.workspaceId)).toEqual({ events: 1, deliveries: 1, keys: 1 });
  });

  it('keys across workspaces in one group do not collide', async () => {
    const a = await workspaceWithWebhook();
    const b = await workspaceWithWebhook();
    const g = ingestor();
    const [ra, rb] = await Promise.all([g.submit(req(a, [ev()], 'k')), g.submit(req(b, [ev({ data: { b: 1 } })], 'k'))]);
    expect(ra.status).toBe(202);
    expect(rb.status).toBe(202);
    expect(await counts(a.workspaceId)).toEqual({ events: 1, deliveries: 1, keys: 1 });
    expect(await counts(b.workspaceId)).toEqual({ events: 1, deliveries: 1, keys: 1 });
  });

  it('an invalid request in a group gets its 400; the others are committed', async () => {
    const ws = await workspaceWithWebhook();
    const g = ingestor();
    const unknown = '7d1b1f3e-1111-4a2b-9c3d-0123456789ab';
    const [ok1, bad, ok2] = await Promise.all([
      g.submit(req(ws, [ev()], 'k1')),
      g.submit(req(ws, [ev(), ev({ connection_id: unknown })], 'k2', false)),
      g.submit(req(ws, [ev({ id: 'e' })])),
    ]);
    expect(ok1.status).toBe(202);
    expect(ok2.status).toBe(202);
    expect(bad.status).toBe(400);
    expect((bad.body as { error: { field: string } }).error.field).toBe('body.events.1.connection_id');
    expect(await counts(ws.workspaceId)).toEqual({ events: 2, deliveries: 2, keys: 1 });
  });

  it('the same event id from two requests of one group: one event, the second a duplicate', async () => {
    const ws = await workspaceWithWebhook();
    const g = ingestor();
    const [a, b] = await Promise.all([g.submit(req(ws, [ev({ id: 'e' })], 'k1')), g.submit(req(ws, [ev({ id: 'e' })]))]);
    expect(a.body).toMatchObject({ duplicate: false, deliveries: 1 });
    expect(b.body).toEqual({ ...(a.body as object), duplicate: true });
    expect(await counts(ws.workspaceId)).toEqual({ events: 1, deliveries: 1, keys: 1 });
  });

  it('a request the database refuses fails alone: the others of its group are committed, nothing of it remains', async () => {
    const ws = await workspaceWithWebhook();
    const g = ingestor();
    // A NUL character (refused over HTTP before the ingestor) makes Postgres fail the statement.
    const poison = ev({ data: { a: 'x\u0000y' } });
    const results = await settle([
      g.submit(req(ws, [ev()], 'k1')),
      g.submit(req(ws, [ev(), poison], 'k2', false)),
      g.submit(req(ws, [ev({ id: 'e' })])),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(await counts(ws.workspaceId)).toEqual({ events: 2, deliveries: 2, keys: 1 });
    // The failed request's key was not kept: a retry with a good body is accepted.
    expect((await g.submit(req(ws, [ev(), ev()], 'k2', false))).status).toBe(202);
  });

  it('with the database gone, every request of a group is answered (rejected), none left hanging', async () => {
    const ws = await workspaceWithWebhook();
    const { createDb } = await import('@hookpost/db');
    const dead = createDb({ connectionString: 'postgres://postgres@127.0.0.1:1/none', poolMax: 2 });
    const g = ingestor({}, dead);
    const results = await settle([g.submit(req(ws, [ev()], 'k1')), g.submit(req(ws, [ev()])), g.submit(req(ws, [ev(), ev()], undefined, false))]);
    expect(results.every((r) => r.status === 'rejected')).toBe(true);
    await dead.destroy();
  });

  /**
   * Loses the answer of the first `n` raw statements whose SQL contains `fragment`: they ran
   * (and committed), the caller sees a dropped session, as after DATABASE_QUERY_TIMEOUT_MS.
   */
  const losingAnswers = (fragment: string, n: number) =>
    whenAnswered(
      fragment,
      () => {
        throw new Error('Connection terminated unexpectedly');
      },
      n,
    );
  /** The read that finds the first copies of repeated event ids (it runs after the events' own statement committed). */
  const failingRepeatLookup = (n: number) => losingAnswers('select e.id, e.workspace_id, e.external_id, e.deliveries', n);
  /** The ingest statement itself. */
  const lostIngestAnswer = (n: number) => losingAnswers('insert into events', n);

  it('a group whose events committed but whose answer could not be read is not run again: no event stored twice', async () => {
    const ws = await workspaceWithWebhook();
    expect((await ingestor().submit(req(ws, [ev({ id: 'seen' })]))).status).toBe(202);
    const g = ingestor({}, api.db.withPlugin(failingRepeatLookup(3)));
    const results = await settle([g.submit(req(ws, [ev({ data: { n: 'no id' } })])), g.submit(req(ws, [ev({ id: 'seen' })]))]);
    // Both answered with the error (503 over HTTP: the fate is unknown, a retry with the event id is safe)...
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(results.map((r) => (r.status === 'rejected' ? (r.reason as Error).name : ''))).toEqual(['EventsStoredAnswerUnknown', 'EventsStoredAnswerUnknown']);
    // ...and the id-less event, committed by the group, was not stored again by a one-by-one retry.
    expect(await counts(ws.workspaceId)).toEqual({ events: 2, deliveries: 2, keys: 0 });
  });

  it('a group whose statement lost its session is not run again request by request: no event stored twice', async () => {
    const ws = await workspaceWithWebhook();
    const g = ingestor({}, api.db.withPlugin(lostIngestAnswer(1)));
    const results = await settle([g.submit(req(ws, [ev({ data: { n: 'a' } })])), g.submit(req(ws, [ev({ data: { n: 'b' } })]))]);
    // Both answered with the connection error (503 over HTTP: the fate is unknown)...
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    // ...and the two id-less events, which the group did commit, were not stored again.
    expect(await counts(ws.workspaceId)).toEqual({ events: 2, deliveries: 2, keys: 0 });
  });

  it('a read after the commit that fails once is retried: every request answered', async () => {
    const ws = await workspaceWithWebhook();
    expect((await ingestor().submit(req(ws, [ev({ id: 'seen' })]))).status).toBe(202);
    const g = ingestor({}, api.db.withPlugin(failingRepeatLookup(1)));
    const [fresh, repeat] = await Promise.all([g.submit(req(ws, [ev({ data: { n: 'no id' } })])), g.submit(req(ws, [ev({ id: 'seen' })]))]);
    expect(fresh.status).toBe(202);
    expect(repeat).toMatchObject({ status: 202, body: { duplicate: true } });
    expect(await counts(ws.workspaceId)).toEqual({ events: 2, deliveries: 2, keys: 0 });
  });

  /** Deletes the workspace's events with these ids and their deliveries (as retention does) once the first ingest statement has answered, before its follow-up read. */
  const retentionAfterInsert = (workspaceId: string, externalIds: string[]) =>
    whenAnswered('insert into events', async () => {
      await sql`delete from deliveries where event_id in (select id from events where workspace_id = ${workspaceId} and external_id = any(${externalIds}::text[]))`.execute(api.db);
      await sql`delete from events where workspace_id = ${workspaceId} and external_id = any(${externalIds}::text[])`.execute(api.db);
    });

  it.each([
    ['without a key (one statement, committed)', undefined],
    ['with an Idempotency-Key (one transaction)', 'k-retention'],
  ])('a repeat whose first event retention deletes mid-ingest is stored as new, %s: 202, nothing stored twice', async (_name, key) => {
    const ws = await workspaceWithWebhook();
    expect((await ingestor().submit(req(ws, [ev({ id: 'old' })]))).status).toBe(202);
    const g = ingestor({}, api.db.withPlugin(retentionAfterInsert(ws.workspaceId, ['old'])));
    const [batch, other] = await Promise.all([
      g.submit(req(ws, [ev({ id: 'old' }), ev({ data: { n: 'no id' } })], key, false)),
      g.submit(req(ws, [ev({ data: { n: 'another' } })])),
    ]);
    expect(batch.status).toBe(202);
    expect(other.status).toBe(202);
    const accepted = (batch.body as { events: { id: string; external_id?: string; duplicate: boolean; deliveries: number }[] }).events;
    expect(accepted.map((e) => [e.external_id, e.duplicate, e.deliveries])).toEqual([['old', false, 1], [undefined, false, 1]]);
    // The first copy and its delivery are gone; the repeat and the two id-less events are stored once each.
    expect(await counts(ws.workspaceId)).toEqual({ events: 3, deliveries: 3, keys: key === undefined ? 0 : 1 });
    const stored = await sql<{ id: string }>`select id from events where workspace_id = ${ws.workspaceId} and external_id = 'old'`.execute(api.db);
    expect(stored.rows.map((r) => r.id)).toEqual([accepted[0]?.id]);
  });

  it('an Idempotency-Key that retention deletes between its claim and its read is claimed anew: accepted once, its answer stored', async () => {
    const ws = await workspaceWithWebhook();
    expect((await ingestor().submit(req(ws, [ev()], 'k-expiring'))).status).toBe(202);
    // Retention deletes the key after the claim's insert found it, before the claim reads it.
    const plugin = whenAnswered('insert into idempotency_keys', async () => {
      await sql`delete from idempotency_keys where workspace_id = ${ws.workspaceId} and key = 'k-expiring'`.execute(api.db);
    });
    const answer = await ingestor({}, api.db.withPlugin(plugin)).submit(req(ws, [ev()], 'k-expiring'));
    expect(answer).toMatchObject({ status: 202, body: { duplicate: false } });
    expect(await counts(ws.workspaceId)).toEqual({ events: 2, deliveries: 2, keys: 1 });
    // Its answer was stored: a repeat now gets it.
    expect(await ingestor().submit(req(ws, [ev()], 'k-expiring'))).toEqual(answer);
    expect(await counts(ws.workspaceId)).toEqual({ events: 2, deliveries: 2, keys: 1 });
  });

  it('two batches with the same event ids in opposite orders, committed at once: both accepted, no deadlock', async () => {
    const ws = await workspaceWithWebhook();
    const g = ingestor({ maxEvents: 1000 });
    const ids = Array.from({ length: 1000 }, (_, i) => ev({ id: `e${i}` }));
    for (let round = 0; round < 3; round++) {
      const forward = ids.map((e) => ({ ...e, id: `${round}-${e.id}` }));
      const results = await settle([g.submit(req(ws, forward, undefined, false)), g.submit(req(ws, [...forward].reverse(), undefined, false))]);
      expect(results.map((r) => (r.status === 'rejected' ? String((r.reason as Error).message) : 'ok'))).toEqual(['ok', 'ok']);
    }
    expect(await count('events', ws.workspaceId)).toBe(3000);
  });

  it('two groups claiming the same keys in opposite orders, at once: no deadlock, no failed group', async () => {
    const ws = await workspaceWithWebhook();
    const warnings: string[] = [];
    const spy = { ...logger, warn: (_o: unknown, msg: string) => warnings.push(msg), error: (_o: unknown, msg: string) => warnings.push(msg) } as unknown as typeof logger;
    const g = new EventIngestor(api.db, spy, { windowMs: 0, maxEvents: 1000, maxInFlight: 4 });
    for (let round = 0; round < 3; round++) {
      const keys = Array.from({ length: 1000 }, (_, i) => `key-${round}-${i}`);
      const forward = keys.map((k) => g.submit(req(ws, [ev()], k))); // the last one starts group 1
      const backward = [...keys].reverse().map((k) => g.submit(req(ws, [ev()], k))); // and this one group 2, at once
      const answers = await Promise.all([...forward, ...backward]);
      expect(answers.every((a) => a.status === 202)).toBe(true);
    }
    expect(warnings).toEqual([]);
    expect(await counts(ws.workspaceId)).toEqual({ events: 3000, deliveries: 3000, keys: 3000 });
  });
});
