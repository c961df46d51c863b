/** API keys: both header forms, 401 without, 404 across workspaces, deletion revokes, environment scoping. */
import SwaggerParser from '@apidevtools/swagger-parser';
import { apiKeys } from '@hookpost/db';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, client, createConnection, newWorkspace, startTestApi, type TestApi, type TestWorkspace } from './helpers.js';

let api: TestApi;
let a: TestWorkspace;
let b: TestWorkspace;

beforeAll(async () => {
  api = await startTestApi();
  a = await newWorkspace(api.db, 'A');
  b = await newWorkspace(api.db, 'B');
});
afterAll(async () => api.close());

const raw = (path: string, headers: Record<string, string> = {}) => fetch(api.url + path, { headers });

describe('authentication', () => {
  it('accepts Bearer <key>, bearer <key> and the bare key', async () => {
    for (const value of [`Bearer ${a.key}`, `bearer ${a.key}`, a.key, `  ${a.key} `]) {
      expect((await raw('/unified/webhook', { authorization: value })).status).toBe(200);
    }
  });

  it('answers 401 in the envelope without a key or with a wrong one', async () => {
    for (const headers of [{}, { authorization: '' }, { authorization: 'Bearer ' }, { authorization: 'Bearer hp_wrong' }, { authorization: 'Basic dXNlcjpwYXNz' }]) {
      const res = await raw('/webhook', headers);
      expect(res.status).toBe(401);
      expect(await res.json()).toMatchObject({ error: { code: 'unauthorized', field: 'header.authorization' } });
    }
  });

  it('answers 401 before reading the body: a malformed or an oversized one, on every route', async () => {
    // Before, the body was read and parsed first (a 400 malformed_json without a key; up to
    // 16 MB parsed on the batch route for a caller with no key).
    const big = JSON.stringify({ events: Array.from({ length: 1000 }, (_, i) => ({ type: 'record:created', data: { i, pad: 'x'.repeat(1000) } })) });
    for (const [path, body] of [['/v1/events', '{not json'], ['/v1/events/batch', '{not json'], ['/webhook', '{not json'], ['/v1/events/batch', big]] as const) {
      for (const headers of [{}, { authorization: 'Bearer hp_wrong' }]) {
        const res = await fetch(api.url + path, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body });
        expect(res.status, path).toBe(401);
        expect(await res.json()).toMatchObject({ error: { code: 'unauthorized' } });
      }
    }
  });

  it('health, readiness and the OpenAPI document need no key', async () => {
    expect((await raw('/healthz')).status).toBe(200);
    expect(await (await raw('/readyz')).json()).toMatchObject({ status: 'ok', checks: { database: 'ok' } });
    const doc = (await (await raw('/openapi.json')).json()) as { openapi: string; paths: Record<string, unknown> };
    expect(doc.openapi).toMatch(/^3\./);
    for (const p of ['/unified/webhook', '/unified/webhook/{id}', '/unified/webhook/{id}/trigger', '/unified/webhook/{id}/resume', '/webhook', '/webhook/test', '/webhook/{id}', '/unified/connection', '/v1/api-keys']) {
      expect(doc.paths, p).toHaveProperty([p]);
    }
    // A valid OpenAPI 3.0 document (numeric exclusiveMinimum and typeless nullable, as the
    // generator wrote them, were refused by validators and broke code generators).
    await expect(SwaggerParser.validate(structuredClone(doc) as Parameters<typeof SwaggerParser.validate>[0])).resolves.toBeTruthy();
    const docs = await raw('/docs/');
    expect(docs.status).toBe(200);
    expect(await docs.text()).toContain('swagger-ui');
  });

  it("hides another workspace's objects behind 404, on every face", async () => {
    const callA = client(api.url, a.key);
    const callB = client(api.url, b.key);
    const conn = await createConnection(callA);
    const hook = (await callA('POST', '/unified/webhook', { connection_id: conn, object_type: 'crm_contact', event: 'created', hook_url: 'http://127.0.0.1:9/a' })).body.id;
    const truto = (await callA('POST', '/webhook', { target_url: 'http://127.0.0.1:9/t' })).body.id;

    expect((await callB('GET', `/unified/webhook/${hook}`)).status).toBe(404);
    expect((await callB('PUT', `/unified/webhook/${hook}`, { connection_id: conn, object_type: 'x', event: 'created', hook_url: 'http://127.0.0.1:9' })).status).toBe(404);
    expect((await callB('PATCH', `/unified/webhook/${hook}`, { is_paused: true })).status).toBe(404);
    expect((await callB('DELETE', `/unified/webhook/${hook}`)).status).toBe(404);
    expect((await callB('PUT', `/unified/webhook/${hook}/trigger`)).status).toBe(404);
    expect((await callB('PUT', `/unified/webhook/${hook}/resume`)).status).toBe(404);
    expect((await callB('GET', `/webhook/${truto}`)).status).toBe(404);
    expect((await callB('PATCH', `/webhook/${truto}`, { is_active: false })).status).toBe(404);
    expect((await callB('DELETE', `/webhook/${truto}`)).status).toBe(404);
    expect((await callB('POST', '/webhook/test', { id: truto })).status).toBe(404);
    expect((await callB('GET', `/unified/connection/${conn}`)).status).toBe(404);
    expect((await callB('DELETE', `/unified/connection/${conn}`)).status).toBe(404);
    // Using A's connection from B is refused as an unknown connection.
    const steal = await callB('POST', '/unified/webhook', { connection_id: conn, object_type: 'crm_contact', event: 'created', hook_url: 'http://127.0.0.1:9/b' });
    expect(steal.status).toBe(400);
    expect(steal.body.error.field).toBe('body.connection_id');
    // Lists show only one's own.
    expect((await callB('GET', '/unified/webhook')).body).toEqual([]);
    expect((await callB('GET', '/webhook')).body.result).toEqual([]);
    expect((await callB('GET', '/unified/connection')).body).toEqual([]);
    // And A still has everything.
    expect((await callA('GET', `/unified/webhook/${hook}`)).status).toBe(200);
    expect((await callA('GET', `/webhook/${truto}`)).status).toBe(200);
  });

  it('a deleted key stops working at once', async () => {
    const call = client(api.url, a.key);
    const created = await call('POST', '/v1/api-keys', { name: 'temporary' });
    expect(created.status).toBe(201);
    expect(created.body.key).toMatch(/^hp_/);
    const temp = client(api.url, created.body.key);
    expect((await temp('GET', '/webhook')).status).toBe(200);
    const listed = await call('GET', '/v1/api-keys');
    expect(JSON.stringify(listed.body)).not.toContain(created.body.key);
    expect((await call('DELETE', `/v1/api-keys/${created.body.id}`)).status).toBe(204);
    expect((await temp('GET', '/webhook')).status).toBe(401);
    // Keys are stored hashed.
    const rows = await api.db.selectFrom('api_keys').select('key_hash').execute();
    expect(rows.every((r) => !r.key_hash.toString('latin1').includes(created.body.key))).toBe(true);
    expect(await apiKeys.findApiKey(api.db, created.body.key)).toBeUndefined();
  });

  it('an environment-scoped key sees only its environment', async () => {
    const call = client(api.url, a.key);
    const staging = (await call('POST', '/v1/environments', { name: 'Staging' })).body;
    const scopedKey = (await call('POST', '/v1/api-keys', { name: 'staging only', environment_id: staging.id })).body.key;
    const scoped = client(api.url, scopedKey);
    const inProd = (await call('POST', '/webhook', { target_url: 'http://127.0.0.1:9/prod' })).body.id;
    const inStaging = (await scoped('POST', '/webhook', { target_url: 'http://127.0.0.1:9/staging' })).body;
    expect(inStaging.environment_id).toBe(staging.id);
    expect((await scoped('GET', `/webhook/${inProd}`)).status).toBe(404);
    expect((await scoped('GET', '/webhook')).body.result.map((w: { id: string }) => w.id)).toEqual([inStaging.id]);
    const conn = await createConnection(scoped);
    expect((await scoped('GET', `/unified/connection/${conn}`)).body.environment).toBe('Staging');
    expect((await scoped('GET', '/v1/environments')).body.map((e: { name: string }) => e.name)).toEqual(['Staging']);
    // Another environment's delivery is not found either, nor its attempts, nor replayable
    // (before: 200, 200 and 202 through /v1/deliveries/{id}).
    expect((await call('POST', '/v1/events', { type: 'record:created', data: { n: 1 } })).status).toBe(202);
    const prodDelivery = (await call('GET', `/v1/webhooks/${inProd}/deliveries`)).body.result[0].id as string;
    expect((await call('GET', `/v1/deliveries/${prodDelivery}`)).status).toBe(200);
    expect((await scoped('GET', `/v1/deliveries/${prodDelivery}`)).status).toBe(404);
    expect((await scoped('GET', `/v1/deliveries/${prodDelivery}/attempts`)).status).toBe(404);
    expect((await scoped('POST', `/v1/deliveries/${prodDelivery}/replay`)).status).toBe(404);
    // Nor the workspace's other keys: before, it listed them all, and deleted any (204).
    const scopedKeys = (await scoped('GET', '/v1/api-keys')).body as { id: string; environment_id: string | null }[];
    expect(scopedKeys.length).toBeGreaterThan(0);
    expect(scopedKeys.every((k) => k.environment_id === staging.id)).toBe(true);
    const allKeys = (await call('GET', '/v1/api-keys')).body as { id: string; environment_id: string | null }[];
    const others = allKeys.filter((k) => k.environment_id !== staging.id);
    expect(others.length).toBeGreaterThan(0);
    for (const k of others) expect((await scoped('DELETE', `/v1/api-keys/${k.id}`)).status).toBe(404);
    expect((await call('GET', '/v1/api-keys')).body).toHaveLength(allKeys.length);
  });

  it('creates workspaces with the admin token only', async () => {
    const noToken = await fetch(`${api.url}/v1/admin/workspaces`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"name":"x"}' });
    expect(noToken.status).toBe(401);
    const res = await client(api.url, ADMIN_TOKEN)('POST', '/v1/admin/workspaces', { name: 'Acme' });
    expect(res.status).toBe(201);
    expect(res.body.workspace).toMatchObject({ name: 'Acme', environments: [{ name: 'Production' }] });
    const fresh = client(api.url, res.body.api_key.key);
    expect((await fresh('GET', '/v1/workspace')).body).toMatchObject({ id: res.body.workspace.id, name: 'Acme' });
  });
});
