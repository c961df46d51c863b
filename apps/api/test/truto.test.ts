/** The Truto face: same storage, Truto's shapes, cursor pagination, secret shown once. */
import { startReceiver } from '@hookpost/mock-receiver';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, createConnection, newWorkspace, startTestApi, type TestApi, type TestWorkspace } from './helpers.js';

let api: TestApi;
let ws: TestWorkspace;
let call: ReturnType<typeof client>;

beforeAll(async () => {
  api = await startTestApi();
  ws = await newWorkspace(api.db);
  call = client(api.url, ws.key);
});
afterAll(async () => api.close());

describe('Truto webhook API', () => {
  it('creates with defaults; the secret appears in the create response only', async () => {
    const created = await call('POST', '/webhook', { target_url: 'http://127.0.0.1:9/truto' });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({
      target_url: 'http://127.0.0.1:9/truto',
      is_active: true,
      environment_id: ws.environmentId,
      event_types: [],
    });
    expect(created.body.secret).toMatch(/^whsec_[A-Za-z0-9+/=]{32}$/);
    expect(new Date(created.body.created_at).toISOString()).toBe(created.body.created_at);

    const got = await call('GET', `/webhook/${created.body.id}`);
    expect(got.status).toBe(200);
    expect(got.body).not.toHaveProperty('secret');
    const { secret: _s, ...withoutSecret } = created.body;
    expect(got.body).toEqual(withoutSecret);

    const list = await call('GET', '/webhook');
    expect(JSON.stringify(list.body)).not.toContain(created.body.secret);
    const patched = await call('PATCH', `/webhook/${created.body.id}`, { is_active: false });
    expect(patched.body).not.toHaveProperty('secret');

    // Stored encrypted, never in plain text.
    const row = await api.db.selectFrom('webhooks').select('secret_encrypted').where('id', '=', created.body.id).executeTakeFirstOrThrow();
    expect(row.secret_encrypted.toString('latin1')).not.toContain(created.body.secret);
  });

  it('creates with event types and is_active, and PATCH changes only what it names', async () => {
    const created = await call('POST', '/webhook', {
      target_url: 'http://127.0.0.1:9/t2',
      is_active: false,
      event_types: ['integrated_account:created', 'record:updated', 'sync_job_run:completed'],
    });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ is_active: false, event_types: ['integrated_account:created', 'record:updated', 'sync_job_run:completed'] });

    const p1 = await call('PATCH', `/webhook/${created.body.id}`, { target_url: 'http://127.0.0.1:9/t3' });
    expect(p1.status).toBe(200);
    expect(p1.body).toMatchObject({ target_url: 'http://127.0.0.1:9/t3', is_active: false, event_types: created.body.event_types });
    const p2 = await call('PATCH', `/webhook/${created.body.id}`, { is_active: true, event_types: ['record:deleted'] });
    expect(p2.body).toMatchObject({ target_url: 'http://127.0.0.1:9/t3', is_active: true, event_types: ['record:deleted'] });
    expect(await call('GET', `/webhook/${created.body.id}`)).toMatchObject({ body: p2.body });
  });

  it('deletes; the webhook is gone', async () => {
    const created = await call('POST', '/webhook', { target_url: 'http://127.0.0.1:9/del' });
    const del = await call('DELETE', `/webhook/${created.body.id}`);
    expect(del).toMatchObject({ status: 200, body: { id: created.body.id } });
    expect((await call('GET', `/webhook/${created.body.id}`)).status).toBe(404);
    expect((await call('DELETE', `/webhook/${created.body.id}`)).status).toBe(404);
  });

  it('POST /webhook/test sends a signed test event now and answers whether the endpoint took it', async () => {
    const receiver = await startReceiver('127.0.0.1', 0);
    try {
      const created = await call('POST', '/webhook', { target_url: `${receiver.url}/truto-test` });
      receiver.addSecret(created.body.secret);
      expect(await call('POST', '/webhook/test', { id: created.body.id })).toMatchObject({ status: 200, body: { success: true } });
      const got = receiver.deliveries().find((d) => d.path === '/truto-test');
      expect(got).toMatchObject({ verified: true, signatures: { standard: 'valid', truto: 'valid' }, body: { event: 'test', payload: { foo: 'bar' }, webhook_id: created.body.id } });

      const dead = await call('POST', '/webhook', { target_url: 'http://127.0.0.1:9/nothing-listens' });
      expect(await call('POST', '/webhook/test', { id: dead.body.id })).toMatchObject({ status: 200, body: { success: false } });
      // Logged like any delivery, with its attempt.
      const list = await call('GET', `/v1/webhooks/${dead.body.id}/deliveries`);
      expect(list.body.result[0]).toMatchObject({ kind: 'test', attempts: 1 });
      const attempts = await call('GET', `/v1/deliveries/${list.body.result[0].id}/attempts`);
      expect(attempts.body[0]).toMatchObject({ attempt: 1, outcome: 'connect_error' });
    } finally {
      await receiver.close();
    }
    expect((await call('POST', '/webhook/test', { id: '00000000-0000-4000-8000-000000000000' })).status).toBe(404);
    expect((await call('POST', '/webhook/test', {})).status).toBe(400);
  });

  it('a test send counts like any send: a 410 disables the webhook, a failure adds to its streak, a success ends it', async () => {
    // Before, a test send's answer was logged and nothing more: a 410 left the webhook active.
    const receiver = await startReceiver('127.0.0.1', 0);
    try {
      const gone = await call('POST', '/webhook', { target_url: `${receiver.url}/test-410` });
      receiver.setBehaviour('/test-410', { status: 410 });
      expect(await call('POST', '/webhook/test', { id: gone.body.id })).toMatchObject({ status: 200, body: { success: false } });
      expect((await call('GET', `/webhook/${gone.body.id}`)).body.is_active).toBe(false);

      const failing = await call('POST', '/webhook', { target_url: `${receiver.url}/test-500` });
      receiver.setBehaviour('/test-500', { status: 500 });
      expect(await call('POST', '/webhook/test', { id: failing.body.id })).toMatchObject({ body: { success: false } });
      const streak = async () => (await api.db.selectFrom('webhooks').select('consecutive_failures').where('id', '=', failing.body.id).executeTakeFirstOrThrow()).consecutive_failures;
      expect(await streak()).toBe(1);
      receiver.setBehaviour('/test-500', undefined);
      expect(await call('POST', '/webhook/test', { id: failing.body.id })).toMatchObject({ body: { success: true } });
      expect(await streak()).toBe(0);
    } finally {
      await receiver.close();
    }
  });

  it('a test send whose secret cannot be decrypted is logged and retried like the worker\'s, not left leased', async () => {
    // Before, it answered success: false and left the delivery 'delivering', leased to the
    // API, with no attempt in the log, until the lease ran out.
    const created = await call('POST', '/webhook', { target_url: 'http://127.0.0.1:9/unreadable' });
    await api.db.updateTable('webhooks').set({ secret_encrypted: Buffer.from('not a sealed secret') }).where('id', '=', created.body.id).execute();
    expect(await call('POST', '/webhook/test', { id: created.body.id })).toMatchObject({ status: 200, body: { success: false } });
    const list = await call('GET', `/v1/webhooks/${created.body.id}/deliveries`);
    expect(list.body.result[0]).toMatchObject({ kind: 'test', status: 'pending', attempts: 1 });
    const attempts = await call('GET', `/v1/deliveries/${list.body.result[0].id}/attempts`);
    expect(attempts.body).toMatchObject([{ attempt: 1, outcome: 'secret_unreadable' }]);
    const row = await api.db.selectFrom('webhooks').select('consecutive_failures').where('id', '=', created.body.id).executeTakeFirstOrThrow();
    expect(row.consecutive_failures).toBe(1);
  });

  it('POST /webhook/test to an inactive webhook (made so, or disabled by a 410) is a 409 at body.id and sends and logs nothing', async () => {
    const receiver = await startReceiver('127.0.0.1', 0);
    try {
      const inactive = await call('POST', '/webhook', { target_url: `${receiver.url}/inactive-test`, is_active: false });
      const gone = await call('POST', '/webhook', { target_url: `${receiver.url}/gone-test` });
      await api.db.updateTable('webhooks').set({ is_active: false, disabled_reason: 'gone' }).where('id', '=', gone.body.id).execute();
      for (const id of [inactive.body.id, gone.body.id]) {
        const r = await call('POST', '/webhook/test', { id });
        expect(r.status).toBe(409);
        expect(r.body.error).toMatchObject({ code: 'conflict', field: 'body.id' });
        expect((await call('GET', `/v1/webhooks/${id}/deliveries`)).body.result).toEqual([]);
      }
      expect(receiver.deliveries()).toEqual([]);
      // Active again, the test goes out.
      expect((await call('PATCH', `/webhook/${inactive.body.id}`, { is_active: true })).status).toBe(200);
      receiver.addSecret(inactive.body.secret);
      expect(await call('POST', '/webhook/test', { id: inactive.body.id })).toMatchObject({ status: 200, body: { success: true } });
    } finally {
      await receiver.close();
    }
  });

  it('takes a limit above 100 as 100, on both faces (unified.to caps its lists; before, a 400)', async () => {
    const other = await newWorkspace(api.db, 'capped');
    const c = client(api.url, other.key);
    for (let i = 0; i < 101; i++) expect((await c('POST', '/webhook', { target_url: `http://127.0.0.1:9/c/${i}` })).status).toBe(201);
    const page = await c('GET', '/webhook?limit=1000');
    expect(page.status).toBe(200);
    expect(page.body.result).toHaveLength(100);
    expect(page.body.next_cursor).toEqual(expect.any(String));
    const rest = await c('GET', `/webhook?limit=1000&next_cursor=${encodeURIComponent(page.body.next_cursor)}`);
    expect(rest.body.result).toHaveLength(1);
    expect((await c('GET', '/unified/webhook?limit=101')).status).toBe(200);
    expect((await c('GET', '/v1/webhooks/00000000-0000-4000-8000-000000000000/deliveries?limit=5000')).status).toBe(404);
  });

  it('pages through many webhooks with limit and next_cursor, each exactly once, in creation order', async () => {
    const other = await newWorkspace(api.db, 'paging');
    const c = client(api.url, other.key);
    const ids: string[] = [];
    for (let i = 0; i < 23; i++) {
      const r = await c('POST', '/webhook', { target_url: `http://127.0.0.1:9/p/${i}`, is_active: i % 3 !== 0 });
      ids.push(r.body.id);
    }
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const qs: string = cursor ? `?limit=5&next_cursor=${encodeURIComponent(cursor)}` : '?limit=5';
      const page = await c('GET', `/webhook${qs}`);
      expect(page.status).toBe(200);
      expect(page.body.result.length).toBeLessThanOrEqual(5);
      seen.push(...page.body.result.map((w: { id: string }) => w.id));
      cursor = page.body.next_cursor;
      pages++;
    } while (cursor);
    expect(pages).toBe(5);
    expect(seen).toEqual(ids);

    const active = await c('GET', '/webhook?is_active=false&limit=100');
    expect(active.body.result.map((w: { id: string }) => w.id)).toEqual(ids.filter((_, i) => i % 3 === 0));
    expect(active.body.next_cursor).toBeNull();

    // Paused (by health, or through the unified face) shows as is_active=false and filters so.
    await api.db.updateTable('webhooks').set({ is_paused: true }).where('id', '=', ids[1] as string).execute();
    const inactive = (await c('GET', '/webhook?is_active=false&limit=100')).body.result as { id: string; is_active: boolean }[];
    expect(inactive.map((w) => w.id)).toContain(ids[1]);
    expect(inactive.every((w) => w.is_active === false)).toBe(true);
    const listedActive = (await c('GET', '/webhook?is_active=true&limit=100')).body.result as { id: string; is_active: boolean }[];
    expect(listedActive.map((w) => w.id)).not.toContain(ids[1]);
    expect(listedActive.every((w) => w.is_active === true)).toBe(true);
  });

  it('filters by environment_id; environment_id on create must be the workspace\'s', async () => {
    const env = await call('POST', '/v1/environments', { name: 'Staging' });
    expect(env.status).toBe(201);
    const inStaging = await call('POST', '/webhook', { target_url: 'http://127.0.0.1:9/staging', environment_id: env.body.id });
    expect(inStaging.body.environment_id).toBe(env.body.id);
    const list = await call('GET', `/webhook?environment_id=${env.body.id}`);
    expect(list.body.result.map((w: { id: string }) => w.id)).toEqual([inStaging.body.id]);

    const foreign = await newWorkspace(api.db, 'foreign');
    const foreignEnv = (await client(api.url, foreign.key)('GET', '/v1/environments')).body[0].id;
    const bad = await call('POST', '/webhook', { target_url: 'http://127.0.0.1:9/x', environment_id: foreignEnv });
    expect(bad.status).toBe(400);
    expect(bad.body.error.field).toBe('body.environment_id');
  });

  it('a unified-face webhook is visible on the Truto face too (one model, several faces)', async () => {
    const connectionId = await createConnection(call);
    const u = await call('POST', '/unified/webhook', {
      connection_id: connectionId,
      object_type: 'crm_contact',
      event: 'updated',
      hook_url: 'http://127.0.0.1:9/u',
      is_paused: true,
    });
    const t = await call('GET', `/webhook/${u.body.id}`);
    expect(t.body).toMatchObject({ target_url: 'http://127.0.0.1:9/u', event_types: ['record:updated'], is_active: false });
    // Re-activating on the Truto face un-pauses it on the unified face.
    await call('PATCH', `/webhook/${u.body.id}`, { is_active: true });
    expect((await call('GET', `/unified/webhook/${u.body.id}`)).body.is_paused).toBe(false);
    // Its event types stay record events on the Truto face: the unified face could not show
    // others (it showed `event: "updated"`, which the webhook no longer received).
    const other = await call('PATCH', `/webhook/${u.body.id}`, { event_types: ['integrated_account:created'] });
    expect(other.status).toBe(400);
    expect(other.body.error.field).toBe('body.event_types');
    expect((await call('GET', `/unified/webhook/${u.body.id}`)).body.event).toBe('updated');
    expect((await call('PATCH', `/webhook/${u.body.id}`, { event_types: ['record:created', 'record:deleted'] })).status).toBe(200);
    expect((await call('GET', `/unified/webhook/${u.body.id}`)).body).toMatchObject({ event: 'created' });
    // A Truto-only webhook (no connection) is not a unified.to webhook.
    const truto = await call('POST', '/webhook', { target_url: 'http://127.0.0.1:9/only-truto' });
    expect((await call('GET', `/unified/webhook/${truto.body.id}`)).status).toBe(404);
  });
});

describe('unpausing a webhook that health paused', () => {
  const pausedByHealth = { is_paused: true, is_healthy: false, consecutive_failures: 20, failing_since: new Date(Date.now() - 3_600_000) };
  const healthOf = (id: string) =>
    api.db.selectFrom('webhooks').select(['is_active', 'is_paused', 'is_healthy', 'consecutive_failures', 'failing_since']).where('id', '=', id).executeTakeFirstOrThrow();

  it('clears its health on either face, as resume does', async () => {
    const conn = await createConnection(call);
    const unified = (await call('POST', '/unified/webhook', { connection_id: conn, object_type: 'crm_contact', event: 'created', hook_url: 'http://127.0.0.1:9/u' })).body.id as string;
    const truto = (await call('POST', '/webhook', { target_url: 'http://127.0.0.1:9/t' })).body.id as string;
    await api.db.updateTable('webhooks').set(pausedByHealth).where('id', 'in', [unified, truto]).execute();
    const fromUnified = await call('PATCH', `/unified/webhook/${unified}`, { is_paused: false });
    expect(fromUnified.body).toMatchObject({ is_paused: false, is_healthy: true }); // before: is_healthy false
    expect((await call('PATCH', `/webhook/${truto}`, { is_active: true })).body.is_active).toBe(true);
    for (const id of [unified, truto]) {
      expect(await healthOf(id)).toEqual({ is_active: true, is_paused: false, is_healthy: true, consecutive_failures: 0, failing_since: null });
    }
  });

  it('an unpause racing the worker\'s pause waits for it and then clears it: the next failure does not pause again', async () => {
    const id = (await call('POST', '/webhook', { target_url: 'http://127.0.0.1:9/race' })).body.id as string;
    let patched: Promise<Awaited<ReturnType<typeof call>>> | undefined;
    // The worker's health update, holding the row as it pauses the webhook.
    await api.db.transaction().execute(async (trx) => {
      await trx.updateTable('webhooks').set(pausedByHealth).where('id', '=', id).execute();
      patched = call('PATCH', `/webhook/${id}`, { is_active: true });
      await new Promise((r) => setTimeout(r, 300));
    });
    expect((await patched)?.body.is_active).toBe(true);
    // Before: the PATCH read the webhook as not stopped, kept the hour-old failing_since, and
    // the first failure after it paused the webhook again.
    expect(await healthOf(id)).toEqual({ is_active: true, is_paused: false, is_healthy: true, consecutive_failures: 0, failing_since: null });
  });
});
