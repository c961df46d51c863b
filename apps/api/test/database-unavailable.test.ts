/**
 * When Postgres cannot be reached (restarting, failing over, the network gone), the API
 * answers 503 `unavailable` with Retry-After, not a 500: nothing was accepted, and a
 * retry with the same Idempotency-Key or event id is safe. Here the API's pool points at
 * a port nobody listens on, so every statement fails to connect.
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createDb, createSecretBox } from '@hookpost/db';
import { createTestDatabase } from '@hookpost/testkit';
import { sql } from 'kysely';
import { createLogger, loadConfig } from '@hookpost/runtime';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createApi } from '../src/app.js';
import { ADMIN_TOKEN, client, newWorkspace } from './helpers.js';

let server: Server;
let closeApi: () => Promise<void>;
let call: ReturnType<typeof client>;

beforeAll(async () => {
  const config = loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'silent', HOOKPOST_ADMIN_TOKEN: ADMIN_TOKEN });
  const db = createDb({ connectionString: 'postgres://postgres@127.0.0.1:1/nowhere', poolMax: 2 });
  const api = createApi({ db, config, logger: createLogger('api-test', 'silent'), secrets: createSecretBox(config.encryptionKey) });
  closeApi = api.close;
  server = createServer(api.handler).listen(0, '127.0.0.1');
  await once(server, 'listening');
  call = client(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, 'hp_test_some_key');
});

afterAll(async () => {
  server?.closeAllConnections();
  await new Promise<void>((r) => server?.close(() => r()));
  await closeApi?.();
});

it.each([
  ['POST', '/v1/events', { type: 'record:created', data: { id: 'x' } }],
  ['POST', '/v1/events/batch', { events: [{ type: 'record:created', data: { id: 'x' } }] }],
  ['GET', '/webhook', undefined],
  ['GET', '/unified/webhook', undefined],
])('%s %s: 503 unavailable with Retry-After, in the one envelope', async (method, path, body) => {
  const res = await call(method, path, body);
  expect(res.status).toBe(503);
  expect(res.headers.get('retry-after')).toBe('1');
  expect(res.body.error).toMatchObject({ code: 'unavailable', message: 'the database is unavailable; retry shortly' });
});

it('the OpenAPI document (served without the database) lists the 503 with the envelope', async () => {
  const res = await call('GET', '/openapi.json');
  expect(res.status).toBe(200);
  const ingest = res.body.paths['/v1/events'].post.responses as Record<string, { description?: string; content?: unknown }>;
  expect(ingest['503']?.content).toEqual(ingest['400']?.content);
});

it('a read-only database (a standby after a failover): 503 unavailable with Retry-After, not a 500', async () => {
  // Before, "cannot execute INSERT in a read-only transaction" was a 500, logged as unhandled.
  const t = await createTestDatabase();
  const config = loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'silent' });
  const ws = await newWorkspace(t.db);
  await sql.raw(`alter database ${t.name} set default_transaction_read_only = on`).execute(t.db);
  const db = createDb({ connectionString: t.url, poolMax: 2 });
  const api = createApi({ db, config, logger: createLogger('api-test', 'silent'), secrets: createSecretBox(config.encryptionKey) });
  const readOnly = createServer(api.handler).listen(0, '127.0.0.1');
  try {
    await once(readOnly, 'listening');
    const res = await client(`http://127.0.0.1:${(readOnly.address() as AddressInfo).port}`, ws.key)('POST', '/v1/events', { type: 'record:created', data: { id: 'x' } });
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('1');
    expect(res.body.error).toMatchObject({ code: 'unavailable' });
  } finally {
    readOnly.closeAllConnections();
    await new Promise<void>((r) => readOnly.close(() => r()));
    await api.close();
    await db.destroy();
    await t.drop();
  }
});
