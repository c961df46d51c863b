/**
 * The fast path of event ingest (src/http/fast-ingest.ts) answers exactly as the Express
 * route does. Each case is sent twice with a fresh key: the first request, with the key
 * not yet cached, goes through Express (which caches it); the repeat takes the fast path.
 * Status, body (but ids and request ids) and what is stored must be the same.
 */
import { connect } from 'node:net';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, newWorkspace, startTestApi, type TestApi } from './helpers.js';

let api: TestApi;
beforeAll(async () => {
  api = await startTestApi();
});
afterAll(async () => api.close());

const UNKNOWN_ID = '7d1b1f3e-1111-4a2b-9c3d-0123456789ab';

/** JSON text of `levels` arrays, one inside the other, around a number (deeper than JSON.stringify goes). */
const deep = (levels: number) => `${'['.repeat(levels)}1${']'.repeat(levels)}`;

type Case = [name: string, path: string, body: unknown, status: number, headers?: Record<string, string>];
const cases: Case[] = [
  ['one event', '/v1/events', { type: 'record:created', object_type: 'crm_contact', data: { id: 'c1' } }, 202],
  ['a batch', '/v1/events/batch', { events: [{ type: 'record:created', data: { n: 1 } }, { type: 'record:updated', data: { n: 2 } }] }, 202],
  ['malformed JSON', '/v1/events', '{"type": "record:created", "data": {', 400],
  ['missing type', '/v1/events', { data: { n: 1 } }, 400],
  ['not an object', '/v1/events', [1, 2, 3], 400],
  ['a bad event inside a batch', '/v1/events/batch', { events: [{ type: 'record:created', data: {} }, { type: 'no such type', data: {} }] }, 400],
  ['an empty batch', '/v1/events/batch', { events: [] }, 400],
  ['unknown environment', '/v1/events', { type: 'record:created', environment_id: UNKNOWN_ID, data: {} }, 400],
  ['unknown connection', '/v1/events', { type: 'record:created', connection_id: UNKNOWN_ID, data: {} }, 400],
  ['idempotency key too long', '/v1/events', { type: 'record:created', data: {} }, 400, { 'idempotency-key': 'k'.repeat(300) }],
  ['a NUL character in the data', '/v1/events', { type: 'record:created', data: { a: 'x\u0000y' } }, 400],
  ['a NUL character deep in a batch', '/v1/events/batch', { events: [{ type: 'record:created', data: {} }, { type: 'record:created', data: { tags: ['ok', 'n\u0000'] } }] }, 400],
  ['the text \\u0000 (an escaped backslash) is no NUL', '/v1/events', { type: 'record:created', data: { a: '\\u0000' } }, 202],
  ['an unpaired surrogate in the data', '/v1/events', '{"type":"record:created","data":{"a":"\\ud83d"}}', 400],
  ['a surrogate pair, escaped, is fine', '/v1/events', '{"type":"record:created","data":{"a":"\\ud83d\\ude00"}}', 202],
  ['data nested deeper than 100 levels', '/v1/events', `{"type":"record:created","data":{"a":${deep(5000)}}}`, 400],
  ['data nested 90 levels', '/v1/events', `{"type":"record:created","data":{"a":${deep(90)}}}`, 202],
];

const stripIds = (body: unknown): unknown => JSON.parse(JSON.stringify(body), (k, v) => (k === 'id' || k === 'request_id' ? '<id>' : v));

async function storedEvents(workspaceId: string): Promise<number> {
  const r = await sql<{ n: string }>`select count(*) as n from events where workspace_id = ${workspaceId}`.execute(api.db);
  return Number(r.rows[0]?.n);
}

describe('fast ingest path', () => {
  it.each(cases)('%s: the same answer through Express and through the fast path', async (_name, path, body, status, headers = {}) => {
    const ws = await newWorkspace(api.db);
    const call = client(api.url, ws.key);
    const servedBefore = api.fastIngestServed();
    const viaExpress = await call('POST', path, body, headers);
    expect(api.fastIngestServed()).toBe(servedBefore);
    const afterFirst = await storedEvents(ws.workspaceId);
    expect((await call('GET', '/webhook')).status).toBe(200); // caches the key
    const viaFast = await call('POST', path, body, headers);
    expect(api.fastIngestServed()).toBe(servedBefore + 1);

    expect(viaExpress.status).toBe(status);
    expect(viaFast.status).toBe(status);
    expect(stripIds(viaFast.body)).toEqual(stripIds(viaExpress.body));
    expect(viaFast.headers.get('content-type')).toBe(viaExpress.headers.get('content-type'));
    expect(viaFast.headers.get('x-request-id')).toBeTruthy();
    // Accepted events are stored once per request; rejected ones not at all.
    expect(await storedEvents(ws.workspaceId)).toBe(status === 202 ? 2 * afterFirst : 0);
  });

  it('hands Express what it does not serve: other content types, query strings, uncached keys', async () => {
    const ws = await newWorkspace(api.db);
    const call = client(api.url, ws.key);
    expect((await call('POST', '/v1/events', { type: 'record:created', data: {} })).status).toBe(202);
    const served = api.fastIngestServed();
    const text = await call('POST', '/v1/events', 'type=record:created', { 'content-type': 'text/plain' });
    expect(text.status).toBeGreaterThanOrEqual(400);
    expect(text.status).toBeLessThan(500);
    expect((await call('POST', '/v1/events?x=1', { type: 'record:created', data: {} })).status).toBe(202);
    expect((await client(api.url, 'hp_not_a_key')('POST', '/v1/events', { type: 'record:created', data: {} })).status).toBe(401);
    expect(api.fastIngestServed()).toBe(served);
  });

  it('survives a client that drops its upload midway', async () => {
    const ws = await newWorkspace(api.db);
    const call = client(api.url, ws.key);
    expect((await call('GET', '/webhook')).status).toBe(200); // caches the key: the fast path serves the next
    const served = api.fastIngestServed();
    const { port } = new URL(api.url);
    await new Promise<void>((resolve, reject) => {
      const socket = connect(Number(port), '127.0.0.1', () => {
        socket.write(
          `POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${ws.key}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"type":"rec`,
          () => setTimeout(() => (socket.destroy(), resolve()), 50),
        );
      });
      socket.on('error', reject);
    });
    await new Promise((r) => setTimeout(r, 100));
    expect(api.fastIngestServed()).toBe(served + 1);
    expect(await storedEvents(ws.workspaceId)).toBe(0);
    expect((await call('POST', '/v1/events', { type: 'record:created', data: {} })).status).toBe(202);
  });
});
