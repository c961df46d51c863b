/**
 * Bad input: every case gets a 4xx in the one envelope, naming the field, and leaves
 * the database exactly as it was. No request, however malformed, produces a 5xx.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, createConnection, newWorkspace, snapshot, startTestApi, type TestApi } from './helpers.js';

let api: TestApi;
let call: ReturnType<typeof client>;
let connectionId: string;
let webhookId: string;
let trutoId: string;
let wsKey: string;

beforeAll(async () => {
  api = await startTestApi({ MIN_INTERVAL_MINUTES: '1' });
  const ws = await newWorkspace(api.db);
  call = client(api.url, ws.key);
  wsKey = ws.key;
  connectionId = await createConnection(call);
  webhookId = (await call('POST', '/unified/webhook', { connection_id: connectionId, object_type: 'crm_contact', event: 'created', hook_url: 'http://127.0.0.1:9/h' })).body.id;
  trutoId = (await call('POST', '/webhook', { target_url: 'http://127.0.0.1:9/t' })).body.id;
});
afterAll(async () => api.close());

const UNKNOWN_ID = '7d1b1f3e-1111-4a2b-9c3d-0123456789ab';

/** JSON text of `levels` arrays, one inside the other, around a number (deeper than JSON.stringify goes). */
const nested = (levels: number) => `${'['.repeat(levels)}1${']'.repeat(levels)}`;

function unifiedBody(overrides: Record<string, unknown>, drop: string[] = []) {
  const body: Record<string, unknown> = {
    connection_id: connectionId,
    object_type: 'crm_contact',
    event: 'created',
    hook_url: 'http://127.0.0.1:9/hook',
    ...overrides,
  };
  for (const k of drop) delete body[k];
  return body;
}

type Case = [name: string, method: string, path: () => string, body: (() => unknown) | undefined, status: number, field: string];

const cases: Case[] = [
  // unified.to webhook create
  ['missing connection_id', 'POST', () => '/unified/webhook', () => unifiedBody({}, ['connection_id']), 400, 'body.connection_id'],
  ['missing object_type', 'POST', () => '/unified/webhook', () => unifiedBody({}, ['object_type']), 400, 'body.object_type'],
  ['missing event (and events)', 'POST', () => '/unified/webhook', () => unifiedBody({}, ['event']), 400, 'body.event'],
  ['missing hook_url and db_url', 'POST', () => '/unified/webhook', () => unifiedBody({}, ['hook_url']), 400, 'body.hook_url'],
  ['non-UUID connection_id', 'POST', () => '/unified/webhook', () => unifiedBody({ connection_id: 'conn_123' }), 400, 'body.connection_id'],
  ['unknown connection_id', 'POST', () => '/unified/webhook', () => unifiedBody({ connection_id: UNKNOWN_ID }), 400, 'body.connection_id'],
  ['hook_url not a URL', 'POST', () => '/unified/webhook', () => unifiedBody({ hook_url: 'not a url' }), 400, 'body.hook_url'],
  ['hook_url not http(s)', 'POST', () => '/unified/webhook', () => unifiedBody({ hook_url: 'ftp://example.com/x' }), 400, 'body.hook_url'],
  ['hook_url of wrong type', 'POST', () => '/unified/webhook', () => unifiedBody({ hook_url: 42 }), 400, 'body.hook_url'],
  ['zero interval', 'POST', () => '/unified/webhook', () => unifiedBody({ interval: 0 }), 400, 'body.interval'],
  ['negative interval', 'POST', () => '/unified/webhook', () => unifiedBody({ interval: -5 }), 400, 'body.interval'],
  ['interval below the minimum', 'POST', () => '/unified/webhook', () => unifiedBody({ interval: 0.5 }), 400, 'body.interval'],
  ['interval as a string', 'POST', () => '/unified/webhook', () => unifiedBody({ interval: '5' }), 400, 'body.interval'],
  ['page_max_limit zero', 'POST', () => '/unified/webhook', () => unifiedBody({ page_max_limit: 0 }), 400, 'body.page_max_limit'],
  ['filters with a non-string value', 'POST', () => '/unified/webhook', () => unifiedBody({ filters: { owner_id: 1 } }), 400, 'body.filters.owner_id'],
  ['unsupported db_type', 'POST', () => '/unified/webhook', () => unifiedBody({ hook_url: undefined, db_type: 'mongodb', db_url: 'mongodb://x' }), 400, 'body.db_type'],
  ['db_type without db_url', 'POST', () => '/unified/webhook', () => unifiedBody({ db_type: 'postgres' }), 400, 'body.db_url'],
  ['event of wrong type', 'POST', () => '/unified/webhook', () => unifiedBody({ event: 123 }), 400, 'body.event'],
  ['malformed object_type', 'POST', () => '/unified/webhook', () => unifiedBody({ object_type: 'CRM Contact!' }), 400, 'body.object_type'],
  ['events not an array', 'POST', () => '/unified/webhook', () => unifiedBody({ event: undefined, events: 'created' }), 400, 'body.events'],
  ['body is an array', 'POST', () => '/unified/webhook', () => [unifiedBody({})], 400, 'body'],
  ['include_all not a boolean', 'POST', () => '/unified/webhook?include_all=maybe', () => unifiedBody({}), 400, 'query.include_all'],
  // unified.to webhook update / patch / path ids
  ['PUT missing object_type', 'PUT', () => `/unified/webhook/${webhookId}`, () => unifiedBody({}, ['object_type']), 400, 'body.object_type'],
  ['PATCH invalid hook_url', 'PATCH', () => `/unified/webhook/${webhookId}`, () => ({ hook_url: 'nope' }), 400, 'body.hook_url'],
  ['PATCH negative interval', 'PATCH', () => `/unified/webhook/${webhookId}`, () => ({ interval: -1 }), 400, 'body.interval'],
  ['PATCH removing the only target', 'PATCH', () => `/unified/webhook/${webhookId}`, () => ({ hook_url: null }), 400, 'body.hook_url'],
  ['PATCH unknown connection', 'PATCH', () => `/unified/webhook/${webhookId}`, () => ({ connection_id: UNKNOWN_ID }), 400, 'body.connection_id'],
  ['GET non-UUID id', 'GET', () => '/unified/webhook/wh_123', undefined, 400, 'path.id'],
  ['PUT non-UUID id', 'PUT', () => '/unified/webhook/123', () => unifiedBody({}), 400, 'path.id'],
  ['DELETE non-UUID id', 'DELETE', () => '/unified/webhook/abc', undefined, 400, 'path.id'],
  ['trigger non-UUID id', 'PUT', () => '/unified/webhook/abc/trigger', undefined, 400, 'path.id'],
  ['resume non-UUID id', 'PUT', () => '/unified/webhook/abc/resume', undefined, 400, 'path.id'],
  ['GET unknown id', 'GET', () => `/unified/webhook/${UNKNOWN_ID}`, undefined, 404, ''],
  ['trigger unknown id', 'PATCH', () => `/unified/webhook/${UNKNOWN_ID}/trigger`, undefined, 404, ''],
  // unified.to list parameters
  ['limit zero', 'GET', () => '/unified/webhook?limit=0', undefined, 400, 'query.limit'],
  ['limit not a number', 'GET', () => '/unified/webhook?limit=ten', undefined, 400, 'query.limit'],
  ['limit fractional', 'GET', () => '/unified/webhook?limit=1.5', undefined, 400, 'query.limit'],
  ['negative offset', 'GET', () => '/unified/webhook?offset=-1', undefined, 400, 'query.offset'],
  ['unknown sort', 'GET', () => '/unified/webhook?sort=hook_url', undefined, 400, 'query.sort'],
  ['unknown order', 'GET', () => '/unified/webhook?order=up', undefined, 400, 'query.order'],
  ['bad updated_gte', 'GET', () => '/unified/webhook?updated_gte=yesterday', undefined, 400, 'query.updated_gte'],
  ['bad created_lte', 'GET', () => '/unified/webhook?created_lte=2024-13-45', undefined, 400, 'query.created_lte'],
  ['updated_gte not a calendar day', 'GET', () => '/unified/webhook?updated_gte=2026-02-30', undefined, 400, 'query.updated_gte'],
  ['updated_gte a date-time with only an hour', 'GET', () => '/unified/webhook?updated_gte=2026-12-01T10', undefined, 400, 'query.updated_gte'],
  // /v1 listings
  ['deliveries since a bare number', 'GET', () => `/v1/webhooks/${webhookId}/deliveries?since=1`, undefined, 400, 'query.since'],
  ['deliveries until a date-time with blanks', 'GET', () => `/v1/webhooks/${webhookId}/deliveries?until=2026-12-01%2010:00:00`, undefined, 400, 'query.until'],
  ['non-UUID connection_id filter', 'GET', () => '/unified/webhook?connection_id=c1', undefined, 400, 'query.connection_id'],
  ['bad is_healthy', 'GET', () => '/unified/webhook?is_healthy=maybe', undefined, 400, 'query.is_healthy'],
  // Truto face
  ['truto missing target_url', 'POST', () => '/webhook', () => ({}), 400, 'body.target_url'],
  ['truto invalid target_url', 'POST', () => '/webhook', () => ({ target_url: 'example.com' }), 400, 'body.target_url'],
  ['truto is_active not boolean', 'POST', () => '/webhook', () => ({ target_url: 'http://127.0.0.1:9', is_active: 'yes' }), 400, 'body.is_active'],
  ['truto event_types not an array', 'POST', () => '/webhook', () => ({ target_url: 'http://127.0.0.1:9', event_types: 'record:created' }), 400, 'body.event_types'],
  ['truto malformed event type', 'POST', () => '/webhook', () => ({ target_url: 'http://127.0.0.1:9', event_types: ['record created'] }), 400, 'body.event_types.0'],
  ['truto non-UUID environment_id', 'POST', () => '/webhook', () => ({ target_url: 'http://127.0.0.1:9', environment_id: 'prod' }), 400, 'body.environment_id'],
  ['truto PATCH bad target_url', 'PATCH', () => `/webhook/${trutoId}`, () => ({ target_url: 'javascript:alert(1)' }), 400, 'body.target_url'],
  ['truto GET non-UUID', 'GET', () => '/webhook/xyz', undefined, 400, 'path.id'],
  ['truto bad cursor', 'GET', () => '/webhook?next_cursor=garbage', undefined, 400, 'query.next_cursor'],
  ['truto bad is_active filter', 'GET', () => '/webhook?is_active=sometimes', undefined, 400, 'query.is_active'],
  ['truto test non-UUID id', 'POST', () => '/webhook/test', () => ({ id: 'x' }), 400, 'body.id'],
  // connections
  ['connection missing integration_type', 'POST', () => '/unified/connection', () => ({ categories: ['crm'], permissions: [] }), 400, 'body.integration_type'],
  ['connection missing categories', 'POST', () => '/unified/connection', () => ({ integration_type: 'hubspot', permissions: [] }), 400, 'body.categories'],
  ['connection categories not an array', 'POST', () => '/unified/connection', () => ({ integration_type: 'hubspot', categories: 'crm', permissions: [] }), 400, 'body.categories'],
  ['connection auth not an object', 'POST', () => '/unified/connection', () => ({ integration_type: 'hubspot', categories: [], permissions: [], auth: 'token' }), 400, 'body.auth'],
  ['connection source URL private', 'POST', () => '/unified/connection', () => ({ integration_type: 'hubspot', categories: [], permissions: [], auth: { api_url: 'http://10.0.0.1/api', access_token: 't' } }), 400, 'body.auth.api_url'],
  ['connection source URL not http', 'POST', () => '/unified/connection', () => ({ integration_type: 'hubspot', categories: [], permissions: [], auth: { api_url: 'ftp://example.com/x' } }), 400, 'body.auth.api_url'],
  ['connection non-UUID id', 'GET', () => '/unified/connection/123', undefined, 400, 'path.id'],
  ['connection list bad limit', 'GET', () => '/unified/connection?limit=-3', undefined, 400, 'query.limit'],
  // /v1
  ['environment without name', 'POST', () => '/v1/environments', () => ({}), 400, 'body.name'],
  ['environment empty name', 'POST', () => '/v1/environments', () => ({ name: '  ' }), 400, 'body.name'],
  ['api key bad environment', 'POST', () => '/v1/api-keys', () => ({ environment_id: 'x' }), 400, 'body.environment_id'],
  ['unknown route', 'GET', () => '/unified/nothing-here', undefined, 404, ''],
  ['known path, wrong method', 'PUT', () => `/webhook/${trutoId}`, () => ({ target_url: 'http://127.0.0.1:9/t' }), 405, ''],
  ['ingest with GET', 'GET', () => '/v1/events', undefined, 405, ''],
  // NUL characters: Postgres cannot store them (text, jsonb); refused before any route runs
  ['event data with a NUL character', 'POST', () => '/v1/events', () => ({ type: 'record:created', data: { a: 'x\u0000y' } }), 400, 'body.data.a'],
  ['batch event with a NUL character', 'POST', () => '/v1/events/batch', () => ({ events: [{ type: 'record:created', data: {} }, { type: 'record:created', data: { tags: ['ok', 'n\u0000'] } }] }), 400, 'body.events.1.data.tags.1'],
  ['environment name with a NUL character', 'POST', () => '/v1/environments', () => ({ name: 'a\u0000b' }), 400, 'body.name'],
  ['webhook meta key with a NUL character', 'POST', () => '/unified/webhook', () => unifiedBody({ meta: { 'k\u0000': 1 } }), 400, 'body.meta'],
  ['event data with an unpaired surrogate', 'POST', () => '/v1/events', () => '{"type":"record:created","data":{"a":"x\\ud800y"}}', 400, 'body.data.a'],
  ['environment name with an unpaired low surrogate', 'POST', () => '/v1/environments', () => '{"name":"\\udc00"}', 400, 'body.name'],
  // Nesting deeper than 100 levels: too deep to serialise or store (the object at level 100 is named)
  ['event data nested 120 levels deep', 'POST', () => '/v1/events', () => `{"type":"record:created","data":{"a":${nested(120)}}}`, 400, `body.data.a${'.0'.repeat(98)}`],
  ['a batch event nested 120 levels deep', 'POST', () => '/v1/events/batch', () => `{"events":[{"type":"record:created","data":{"a":${nested(120)}}}]}`, 400, `body.events.0.data.a${'.0'.repeat(96)}`],
  ['webhook meta nested 100,000 levels deep', 'POST', () => '/unified/webhook', () => `${JSON.stringify(unifiedBody({})).slice(0, -1)},"meta":{"a":${nested(100_000)}}}`, 400, `body.meta.a${'.0'.repeat(98)}`],
];

describe('bad input is a 4xx naming the field, and changes nothing', () => {
  it.each(cases)('%s', async (_name, method, path, body, status, field) => {
    const before = await snapshot(api.db);
    const res = await call(method, path(), body?.());
    expect(res.status, JSON.stringify(res.body)).toBe(status);
    expect(res.body.error.code).toBeTypeOf('string');
    expect(res.body.error.message).toBeTypeOf('string');
    if (field) {
      expect(res.body.error.field).toBe(field);
      expect(res.body.error.issues[0].field).toBe(field);
    }
    expect(await snapshot(api.db)).toBe(before);
  });

  it('a known path asked with another method is 405 method_not_allowed, with Allow', async () => {
    const cases: [string, string, string][] = [
      ['PUT', `/webhook/${trutoId}`, 'GET, PATCH, DELETE, HEAD'],
      ['DELETE', '/v1/events', 'POST'],
      ['POST', `/v1/deliveries/${UNKNOWN_ID}/attempts`, 'GET, HEAD'],
      ['GET', `/unified/webhook/${webhookId}/trigger/`, 'PATCH, PUT'],
    ];
    for (const [method, path, allow] of cases) {
      const res = await call(method, path);
      expect(res.status, `${method} ${path}`).toBe(405);
      expect(res.body.error.code).toBe('method_not_allowed');
      expect(res.headers.get('allow')?.split(', ').sort()).toEqual(allow.split(', ').sort());
    }
    // A path no route has stays a 404.
    expect((await call('PUT', `/v1/webhooks/${UNKNOWN_ID}/nothing`)).status).toBe(404);
  });

  it('malformed JSON is 400 malformed_json', async () => {
    const before = await snapshot(api.db);
    for (const raw of ['{"target_url":', '{target_url: "x"}', "{'a':1}", '[1,2', 'nul']) {
      const res = await call('POST', '/webhook', raw);
      expect(res.status).toBe(400);
      expect(res.body.error).toMatchObject({ code: 'malformed_json', field: 'body' });
    }
    expect(await snapshot(api.db)).toBe(before);
  });

  it('an oversized body is 413 payload_too_large', async () => {
    const before = await snapshot(api.db);
    const huge = { target_url: 'http://127.0.0.1:9/x', pad: 'x'.repeat(2 * 1024 * 1024) };
    const res = await call('POST', '/webhook', huge);
    expect(res.status).toBe(413);
    expect(res.body.error).toMatchObject({ code: 'payload_too_large', field: 'body' });
    expect(await snapshot(api.db)).toBe(before);
  });

  it('stores unknown but well-formed open-enum values as given', async () => {
    const res = await call('POST', '/unified/webhook', unifiedBody({ event: 'merged', object_type: 'crm_brand_new_thing', webhook_type: 'hybrid' }));
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ event: 'merged', object_type: 'crm_brand_new_thing', webhook_type: 'hybrid' });
  });
});

describe('no request produces a 5xx', () => {
  const junk: unknown[] = [null, true, 0, -1, 1e308, '', 'x', 'a\u0000b', '\ud800', [], {}, [null], { a: { b: { c: [] } } }, { id: null }, { target_url: null }];
  const fields = ['connection_id', 'object_type', 'event', 'events', 'hook_url', 'interval', 'page_max_limit', 'filters', 'fields', 'include_raw', 'db_type', 'db_url', 'is_paused', 'meta', 'target_url', 'is_active', 'event_types', 'categories', 'permissions', 'integration_type', 'auth', 'name', 'id'];

  it('survives junk in every field of every write route', { timeout: 120_000 }, async () => {
    const routes: [string, string][] = [
      ['POST', '/unified/webhook'],
      ['PUT', `/unified/webhook/${webhookId}`],
      ['PATCH', `/unified/webhook/${webhookId}`],
      ['POST', '/webhook'],
      ['PATCH', `/webhook/${trutoId}`],
      ['POST', '/webhook/test'],
      ['POST', '/unified/connection'],
      ['PATCH', `/unified/connection/${connectionId}`],
      ['POST', '/v1/environments'],
      ['POST', '/v1/api-keys'],
    ];
    const statuses = new Set<number>();
    for (const [method, path] of routes) {
      for (const value of junk) {
        statuses.add((await call(method, path, value)).status);
        for (const f of fields) {
          const res = await call(method, path, { ...unifiedBody({}), [f]: value });
          expect(res.status, `${method} ${path} ${f}=${JSON.stringify(value)}`).toBeLessThan(500);
        }
      }
    }
    expect([...statuses].every((s) => s < 500)).toBe(true);
  });

  it('survives junk in query strings and paths', async () => {
    const queries = ['limit=', 'limit=%00', 'offset=1e400', 'sort[]=a', 'order[a]=b', 'updated_gte[]=x', 'is_healthy=', 'env[]=a&env[]=b', 'object=%FF', 'next_cursor=' + 'a'.repeat(500)];
    for (const q of queries) {
      for (const path of ['/unified/webhook', '/webhook', '/unified/connection']) {
        const res = await call('GET', `${path}?${q}`);
        expect(res.status, `${path}?${q}`).toBeLessThan(500);
      }
    }
    for (const p of ['/unified/webhook/%00', '/webhook/%E0%A4%A', '/unified/webhook/' + 'a'.repeat(5000)]) {
      expect((await call('GET', p)).status).toBeLessThan(500);
    }
  });

  it('a body in a charset or encoding it cannot read names the header at fault (not `body`, not `path`)', async () => {
    const send = (path: string, headers: Record<string, string>, body: string | Buffer) =>
      fetch(`${api.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${wsKey}`, ...headers }, body });
    const json = '{"target_url":"http://127.0.0.1:9/t","type":"record:created","data":{}}';
    for (const path of ['/webhook', '/v1/events']) {
      const cases: [Record<string, string>, number, string][] = [
        [{ 'content-type': 'application/json; charset=latin1' }, 415, 'header.content-type'],
        [{ 'content-type': 'application/json', 'content-encoding': 'gzip' }, 400, 'header.content-encoding'],
        [{ 'content-type': 'application/json', 'content-encoding': 'br' }, 415, 'header.content-encoding'],
      ];
      for (const [headers, status, field] of cases) {
        const res = await send(path, headers, json);
        const body = (await res.json()) as { error: { field?: string } };
        expect(res.status, `${path} ${JSON.stringify(headers)}`).toBe(status);
        expect(body.error.field, `${path} ${JSON.stringify(headers)}`).toBe(field);
      }
    }
  });

  it('a body that is not UTF-8 is a 400 at body on every route, and stores nothing (before: 202, stored with U+FFFD)', async () => {
    const before = await snapshot(api.db);
    const bytes = (json: string) => Buffer.concat([Buffer.from(json.split('@')[0] as string), Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from(json.split('@')[1] as string)]);
    for (const [path, json] of [
      ['/v1/events', '{"type":"record:created","data":{"name":"@"}}'],
      ['/v1/events/batch', '{"events":[{"type":"record:created","data":{"name":"@"}}]}'],
      ['/webhook', '{"target_url":"http://127.0.0.1:9/t","event_types":["@"]}'],
    ] as const) {
      const res = await fetch(`${api.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${wsKey}`, 'content-type': 'application/json' }, body: bytes(json) });
      expect(res.status, path).toBe(400);
      expect(((await res.json()) as { error: { field?: string } }).error.field, path).toBe('body');
    }
    expect(await snapshot(api.db)).toBe(before);
  });

  it('filters as large as the contract allows make a stream (their key is a hash: the text outgrew its unique index, a 500)', async () => {
    // Random values: Postgres compresses index entries, and repetitive text stayed under the limit.
    const filters = Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`field_${i}`, randomBytes(500).toString('hex')]));
    const created = await call('POST', '/unified/webhook', unifiedBody({ filters }));
    expect(created.status, JSON.stringify(created.body)).toBe(200);
    // Equal filters, in any key order, share the stream; others get their own.
    const same = await call('POST', '/unified/webhook', unifiedBody({ filters: Object.fromEntries(Object.entries(filters).reverse()) }));
    const other = await call('POST', '/unified/webhook', unifiedBody({ filters: { ...filters, field_0: 'y' } }));
    const streamOf = async (id: string) => (await api.db.selectFrom('webhooks').select('stream_id').where('id', '=', id).executeTakeFirstOrThrow()).stream_id;
    expect(await streamOf(same.body.id)).toBe(await streamOf(created.body.id));
    expect(await streamOf(other.body.id)).not.toBe(await streamOf(created.body.id));
    for (const id of [created.body.id, same.body.id, other.body.id]) expect((await call('DELETE', `/unified/webhook/${id}`)).status).toBe(200);
  });

  it('query values, cursors and date-times that reached Postgres as 500s are 400s naming the field, and change nothing', async () => {
    const before = await snapshot(api.db);
    const cursor = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const cases: [method: string, path: string, body: unknown, field: string][] = [
      ['GET', '/unified/webhook?offset=1e20', undefined, 'query.offset'],
      ['GET', '/unified/connection?offset=9223372036854775808', undefined, 'query.offset'],
      ['GET', '/unified/webhook?offset=0x10', undefined, 'query.offset'],
      ['GET', '/unified/webhook?limit=%201', undefined, 'query.limit'],
      ['GET', '/unified/webhook?object=%00', undefined, 'query.object'],
      ['GET', '/unified/connection?external_xref=%00', undefined, 'query.external_xref'],
      ['GET', `/webhook?next_cursor=${cursor(['2020-01-01T00:00:00Z', '-'.repeat(36)])}`, undefined, 'query.next_cursor'],
      ['GET', `/v1/webhooks/${trutoId}/deliveries?next_cursor=${cursor(['-271821-04-20T00:00:00.000Z', UNKNOWN_ID])}`, undefined, 'query.next_cursor'],
      ['GET', `/v1/webhooks/${trutoId}/deliveries?next_cursor=${cursor(['0000-01-01T00:00:00.000Z', UNKNOWN_ID])}`, undefined, 'query.next_cursor'],
      ['GET', '/unified/webhook?updated_gte=2020-01-01T00:00:00%2B25:00', undefined, 'query.updated_gte'],
      ['GET', `/v1/webhooks/${trutoId}/deliveries?since=2020-01-01T00:00:00-99:99`, undefined, 'query.since'],
      ['POST', `/v1/webhooks/${trutoId}/replay`, { since: '2020-01-01T00:00:00+25:00' }, 'body.since'],
    ];
    for (const [method, path, body, field] of cases) {
      const res = await call(method, path, body);
      expect(res.status, `${method} ${path}: ${JSON.stringify(res.body)}`).toBe(400);
      expect(res.body.error.field, path).toBe(field);
    }
    expect(await snapshot(api.db)).toEqual(before);
  });

  it("a webhook replay takes `since` in the deliveries list's forms: a date, a date-time with or without an offset", async () => {
    // Before, only a date-time with an offset: `2026-12-08` was a 400 with zod's bare message.
    for (const since of ['2020-01-01', '2020-01-01T00:00:00', '2020-01-01T00:00:00Z']) {
      const res = await call('POST', `/v1/webhooks/${trutoId}/replay`, { since });
      expect(res.status, `${since}: ${JSON.stringify(res.body)}`).toBe(202);
      expect(res.body).toMatchObject({ count: 0, deliveries: [] });
    }
  });
});
