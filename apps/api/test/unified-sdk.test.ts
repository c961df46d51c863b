/**
 * The published unified.to TypeScript SDK, pointed at Hookpost, must work unchanged:
 * every call below goes through the SDK's own request encoding and response schemas.
 */
import { UnifiedTo } from '@unified-api/typescript-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSecretBox } from '@hookpost/db';
import { loadConfig } from '@hookpost/runtime';
import { client, createConnection, newWorkspace, startTestApi, type TestApi, type TestWorkspace } from './helpers.js';

let api: TestApi;
let ws: TestWorkspace;
let sdk: UnifiedTo;
let connectionId: string;
let otherConnectionId: string;

beforeAll(async () => {
  api = await startTestApi();
  ws = await newWorkspace(api.db);
  // The SDK sends the key bare (`authorization: <key>`), as unified.to's own API expects.
  sdk = new UnifiedTo({ serverURL: api.url, security: { jwt: ws.key } });
  connectionId = await createConnection(client(api.url, ws.key), { integration_type: 'hubspot' });
  otherConnectionId = await createConnection(client(api.url, ws.key), { integration_type: 'salesforce', categories: ['crm'] });
});
afterAll(async () => api.close());

describe('webhooks through @unified-api/typescript-sdk', () => {
  it('creates a webhook and reads back exactly what was written', async () => {
    const created = await sdk.webhook.createUnifiedWebhook({
      webhook: {
        connectionId,
        objectType: 'crm_contact',
        event: 'created',
        hookUrl: 'http://127.0.0.1:9/hooks/contacts',
        interval: 15,
        pageMaxLimit: 50,
        filters: { owner_id: '42' },
        fields: 'id,name,emails',
        webhookType: 'virtual',
      },
    });
    expect(created.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(created).toMatchObject({
      connectionId,
      objectType: 'crm_contact',
      event: 'created',
      hookUrl: 'http://127.0.0.1:9/hooks/contacts',
      interval: 15,
      pageMaxLimit: 50,
      filters: { owner_id: '42' },
      fields: 'id,name,emails',
      webhookType: 'virtual',
      integrationType: 'hubspot',
      environment: 'Production',
      isHealthy: true,
      isPaused: false,
      workspaceId: ws.workspaceId,
    });
    expect(created.createdAt).toBeInstanceOf(Date);
    expect(created.runs).toEqual([]);

    const got = await sdk.webhook.getUnifiedWebhook({ id: created.id as string });
    expect(got).toEqual(created);
  });

  // Runs themselves are made by the worker (apps/delivery-worker/test/virtual*.test.ts);
  // here: what the API asks of it.
  const streamOf = (id: string) =>
    api.db
      .selectFrom('webhooks')
      .innerJoin('poll_streams', 'poll_streams.id', 'webhooks.stream_id')
      .select(['webhooks.initial_sync', 'poll_streams.next_run_at', 'poll_streams.manual_requested'])
      .where('webhooks.id', '=', id)
      .executeTakeFirstOrThrow();

  it('include_all=true asks for an initial sync now; without it the first run is an interval away', async () => {
    const withAll = await sdk.webhook.createUnifiedWebhook({
      webhook: { connectionId, objectType: 'crm_deal', event: 'updated', hookUrl: 'http://127.0.0.1:9/d', interval: 60 },
      includeAll: true,
    });
    expect(withAll.runs).toEqual([]);
    const initial = await streamOf(withAll.id as string);
    expect(initial.initial_sync).toBe('pending');
    expect((initial.next_run_at as Date).getTime()).toBeLessThanOrEqual(Date.now());
    const without = await sdk.webhook.createUnifiedWebhook({
      webhook: { connectionId, objectType: 'crm_ticket', event: 'updated', hookUrl: 'http://127.0.0.1:9/d', interval: 60 },
      includeAll: false,
    });
    const later = await streamOf(without.id as string);
    expect(later.initial_sync).toBeNull();
    expect((later.next_run_at as Date).getTime()).toBeGreaterThan(Date.now() + 59 * 60_000);
  });

  it('replaces with PUT and patches with PATCH', async () => {
    const w = await sdk.webhook.createUnifiedWebhook({
      webhook: { connectionId, objectType: 'hris_employee', event: 'created', hookUrl: 'http://127.0.0.1:9/a', interval: 60, fields: 'id' },
    });
    const put = await sdk.webhook.updateUnifiedWebhook({
      id: w.id as string,
      webhook: { connectionId: otherConnectionId, objectType: 'hris_employee', event: 'deleted', hookUrl: 'http://127.0.0.1:9/b', interval: 30 },
    });
    expect(put).toMatchObject({ connectionId: otherConnectionId, event: 'deleted', hookUrl: 'http://127.0.0.1:9/b', interval: 30, integrationType: 'salesforce' });
    expect(put.fields).toBeUndefined(); // PUT replaces: omitted fields are cleared
    expect(put.createdAt).toEqual(w.createdAt);
    expect((put.updatedAt as Date).getTime()).toBeGreaterThanOrEqual((w.updatedAt as Date).getTime());

    // The SDK's PATCH always carries connection_id, event, object_type and environment.
    const patched = await sdk.webhook.patchUnifiedWebhook({
      id: w.id as string,
      webhook: { connectionId: otherConnectionId, objectType: 'hris_employee', event: 'deleted', isPaused: true, pageMaxLimit: 10 },
    });
    expect(patched).toMatchObject({ isPaused: true, pageMaxLimit: 10, hookUrl: 'http://127.0.0.1:9/b', interval: 30 });
    expect(await sdk.webhook.getUnifiedWebhook({ id: w.id as string })).toEqual(patched);
  });

  it('triggers with PUT and PATCH: the stream is due now, as a manual run', async () => {
    for (const trigger of ['updateUnifiedWebhookTrigger', 'patchUnifiedWebhookTrigger'] as const) {
      const w = await sdk.webhook.createUnifiedWebhook({
        webhook: { connectionId, objectType: 'crm_company', event: 'updated', hookUrl: `http://127.0.0.1:9/${trigger}`, interval: 60, filters: { t: trigger } },
      });
      expect(((await streamOf(w.id as string)).next_run_at as Date).getTime()).toBeGreaterThan(Date.now() + 59 * 60_000);
      await sdk.webhook[trigger]({ id: w.id as string });
      const s = await streamOf(w.id as string);
      expect(s.manual_requested).toBe(true);
      expect((s.next_run_at as Date).getTime()).toBeLessThanOrEqual(Date.now());
    }
  });

  it('resume clears is_healthy=false and is_paused', async () => {
    const w = await sdk.webhook.createUnifiedWebhook({
      webhook: { connectionId, objectType: 'crm_lead', event: 'created', hookUrl: 'http://127.0.0.1:9/l', isPaused: true },
    });
    await api.db.updateTable('webhooks').set({ is_healthy: false }).where('id', '=', w.id as string).execute();
    const call = client(api.url, ws.key);
    const res = await call('PUT', `/unified/webhook/${w.id}/resume`);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ is_healthy: true, is_paused: false });
    const got = await sdk.webhook.getUnifiedWebhook({ id: w.id as string });
    expect(got).toMatchObject({ isHealthy: true, isPaused: false });
    expect(got.checkedAt).toBeInstanceOf(Date);
  });

  it('removes a webhook; it is gone afterwards', async () => {
    const w = await sdk.webhook.createUnifiedWebhook({
      webhook: { connectionId, objectType: 'crm_note', event: 'created', hookUrl: 'http://127.0.0.1:9/n' },
    });
    await sdk.webhook.removeUnifiedWebhook({ id: w.id as string });
    await expect(sdk.webhook.getUnifiedWebhook({ id: w.id as string })).rejects.toMatchObject({ statusCode: 404 });
  });

  it('stores db_url encrypted and shows it with its password and credential parameters masked', async () => {
    const call = client(api.url, ws.key);
    const dbUrl = 'postgres://sync:pw-in-userinfo@db.example.com:5432/crm?sslmode=require&password=pw-in-query&sslpassword=pw-ssl&application_name=hp';
    const created = await call('POST', '/unified/webhook', { connection_id: connectionId, object_type: 'crm_contact', event: 'updated', db_type: 'postgres', db_url: dbUrl });
    expect(created.status).toBe(200);
    const shown = [created.body.db_url, (await sdk.webhook.getUnifiedWebhook({ id: created.body.id })).dbUrl];
    for (const url of shown) {
      expect(url).not.toMatch(/pw-/);
      const u = new URL(url as string);
      expect([u.username, u.password, u.searchParams.get('password'), u.searchParams.get('sslpassword')]).toEqual(['sync', '***', '***', '***']);
      expect([u.host, u.searchParams.get('sslmode'), u.searchParams.get('application_name')]).toEqual(['db.example.com:5432', 'require', 'hp']);
    }
    const row = await api.db.selectFrom('webhooks').select('db_url_encrypted').where('id', '=', created.body.id).executeTakeFirstOrThrow();
    expect(row.db_url_encrypted?.toString('latin1')).not.toMatch(/pw-/);
  });

  it('keeps the stored db_url when a read webhook is sent back with its masked form (PUT and PATCH)', async () => {
    // Before, the SDK's update (a whole Webhook: read, changed, sent back) stored the mask.
    const box = createSecretBox(loadConfig({ NODE_ENV: 'test', DATABASE_URL: 'postgres://x' }).encryptionKey);
    const stored = async (id: string) => {
      const row = await api.db.selectFrom('webhooks').select('db_url_encrypted').where('id', '=', id).executeTakeFirstOrThrow();
      return box.open(row.db_url_encrypted as Buffer);
    };
    const dbUrl = 'postgres://sync:s3cret@db.example.com:5432/crm';
    const w = await sdk.webhook.createUnifiedWebhook({ webhook: { connectionId, objectType: 'crm_contact', event: 'updated', dbType: 'postgres', dbUrl } });
    const got = await sdk.webhook.getUnifiedWebhook({ id: w.id as string });
    expect(got.dbUrl).toBe('postgres://sync:***@db.example.com:5432/crm');
    const put = await sdk.webhook.updateUnifiedWebhook({ id: w.id as string, webhook: { ...got, interval: 30 } });
    expect(put).toMatchObject({ interval: 30, dbUrl: got.dbUrl });
    expect(await stored(w.id as string)).toBe(dbUrl);
    await sdk.webhook.patchUnifiedWebhook({ id: w.id as string, webhook: { ...got, interval: 45 } });
    expect(await stored(w.id as string)).toBe(dbUrl);
    // A new one is taken as given.
    const other = 'postgres://sync:n3w@db2.example.com:5432/crm';
    await sdk.webhook.patchUnifiedWebhook({ id: w.id as string, webhook: { ...got, dbUrl: other } });
    expect(await stored(w.id as string)).toBe(other);
  });

  it('masks a password the URL parser would read as something else (an unencoded "/", "#" or "&" in it)', async () => {
    const call = client(api.url, ws.key);
    for (const [dbUrl, shown] of [
      ['postgres://app:1234/xyZ@db.example.com:5432/prod', 'postgres://app:***@db.example.com:5432/prod'],
      ['postgres://app:p#w/d@db.example.com/prod?password=x', 'postgres://app:***@db.example.com/prod?password=***'],
      ['postgres://app@db.example.com/prod', 'postgres://app@db.example.com/prod'],
      // An @ in the query is no user information (a first version showed these whole).
      ['postgresql://srv.example.com/prod?user=admin@srv&password=S3cret', 'postgresql://srv.example.com/prod?user=admin@srv&password=***'],
      // An unencoded # or & in a query password: URL's reading showed its tail (a review found
      // `?password=***#t-tail` and `?password=***&cd-tail=&x=1`).
      ['postgres://db.example.com/prod?password=S3cr#t-tail', 'postgres://db.example.com/prod?password=***'],
      ['postgres://db.example.com/prod?password=ab&cd-tail&sslmode=require', 'postgres://db.example.com/prod?password=***&sslmode=require'],
      ['postgres://db.example.com/prod#x?password=S3cret', 'postgres://db.example.com/prod#x?password=***'],
      // Names with characters a first version of the text mask did not split at (a review).
      ['postgres://db.example.com/prod?sslmode=require&auth[token]=s3cret', 'postgres://db.example.com/prod?sslmode=require&auth[token]=***'],
      ['postgres://db.example.com/prod?a=1&api:key=s3cret&pass word=x', 'postgres://db.example.com/prod?a=1&api:key=***&pass word=***'],
      ['postgres://db.example.com/prod?password=p@ss', 'postgres://db.example.com/prod?password=***'],
      // A host and port with an @ after them: a password with an unencoded "?" (masked whole).
      ['postgres://u:123?w@db.example.com/prod', 'postgres://***'],
      ['postgres://app:p?w#d@db.example.com/prod?password=x', 'postgres://***'],
      // An @ both before and after the query, a user name with / or ?, a port before an @ in
      // the query: parts that cannot be told apart, masked whole (a review found each shown).
      ['postgres://user:p@ss?word@host/db', 'postgres://***'],
      ['postgres://user:p@ss/x?y@host/db', 'postgres://***'],
      ['postgres://us/er:pa?ss@host/db', 'postgres://***'],
      ['postgres://us?er:pass@host/db', 'postgres://***'],
      ['postgres://user:pass@/db?host=/socket', 'postgres://user:***@/db?host=/socket'],
    ] as const) {
      const created = await call('POST', '/unified/webhook', { connection_id: connectionId, object_type: 'crm_contact', event: 'updated', db_type: 'postgres', db_url: dbUrl });
      expect(created.status).toBe(200);
      expect(created.body.db_url).toBe(shown);
      expect((await call('GET', `/unified/webhook/${created.body.id}`)).body.db_url).toBe(shown);
    }
  });

  it('masks anew, when shown, a db_url whose stored mask missed its password (stored before the mask was fixed)', async () => {
    const call = client(api.url, ws.key);
    const created = await call('POST', '/unified/webhook', { connection_id: connectionId, object_type: 'crm_contact', event: 'updated', db_type: 'postgres', db_url: 'postgres://app:pw@db.example.com/prod' });
    // What the first fix of this mask stored for `postgres://db.example.com:5432/app?user=admin@server&password=s3cr3t`.
    await api.db.updateTable('webhooks').set({ db_url_redacted: 'postgres://db.example.com:***@server&password=s3cr3t' }).where('id', '=', created.body.id).execute();
    expect((await call('GET', `/unified/webhook/${created.body.id}`)).body.db_url).toBe('postgres://***');
    await api.db.updateTable('webhooks').set({ db_url_redacted: 'postgres://app:1234/xyZ@db.example.com:5432/prod' }).where('id', '=', created.body.id).execute();
    const got = (await call('GET', `/unified/webhook/${created.body.id}`)).body;
    expect(got.db_url).toBe('postgres://app:***@db.example.com:5432/prod');
    // Sent back as shown, it keeps the stored URL (not the mask).
    expect((await call('PUT', `/unified/webhook/${created.body.id}`, got)).status).toBe(200);
    const row = await api.db.selectFrom('webhooks').select('db_url_encrypted').where('id', '=', created.body.id).executeTakeFirstOrThrow();
    const box = createSecretBox(loadConfig({ NODE_ENV: 'test', DATABASE_URL: 'postgres://x' }).encryptionKey);
    expect(box.open(row.db_url_encrypted as Buffer)).toBe('postgres://app:pw@db.example.com/prod');
  });

  it('shows events[] for a webhook with several record types (set on the Truto face), and a read sent back keeps them', async () => {
    // Before, only `event` (the first) showed: a client read one type, and a read sent back
    // whole kept only that one. (The current SDK's model has no `events`: it drops them.)
    const w = await sdk.webhook.createUnifiedWebhook({ webhook: { connectionId, objectType: 'crm_deal', event: 'created', hookUrl: 'http://127.0.0.1:9/multi' } });
    const call = client(api.url, ws.key);
    expect((await call('PATCH', `/webhook/${w.id}`, { event_types: ['record:created', 'record:deleted'] })).status).toBe(200);
    const got = (await call('GET', `/unified/webhook/${w.id}`)).body;
    expect(got).toMatchObject({ event: 'created', events: ['created', 'deleted'] });
    expect((await call('PUT', `/unified/webhook/${w.id}`, got)).status).toBe(200);
    expect((await call('GET', `/webhook/${w.id}`)).body.event_types).toEqual(['record:created', 'record:deleted']);
  });

  it('accepts the 2023 model: events[], include_raw, subscriptions, meta', async () => {
    const call = client(api.url, ws.key);
    const res = await call('POST', '/unified/webhook', {
      connection_id: connectionId,
      object_type: 'crm_contact',
      events: ['created', 'updated'],
      hook_url: 'http://127.0.0.1:9/legacy',
      interval: 60,
      include_raw: true,
      subscriptions: ['sub_1'],
      meta: { team: 'growth' },
      integration_type: 'ignored-read-only',
      workspace_id: 'ignored-read-only',
    });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      event: 'created',
      events: ['created', 'updated'],
      include_raw: true,
      subscriptions: ['sub_1'],
      meta: { team: 'growth' },
      integration_type: 'hubspot',
    });
    // And the current SDK still parses it.
    const got = await sdk.webhook.getUnifiedWebhook({ id: res.body.id as string });
    expect(got.event).toBe('created');
  });
});

describe('listing webhooks through the SDK', () => {
  let listConn: string;
  let listKey: string;
  const ids: string[] = [];

  beforeAll(async () => {
    const other = await newWorkspace(api.db, 'List workspace');
    listKey = other.key;
    const call = client(api.url, other.key);
    listConn = await createConnection(call, { integration_type: 'pipedrive' });
    const second = await createConnection(call, { integration_type: 'zoho' });
    sdk = new UnifiedTo({ serverURL: api.url, security: { jwt: other.key } });
    const specs = [
      { connectionId: listConn, objectType: 'crm_contact', event: 'created' },
      { connectionId: listConn, objectType: 'crm_deal', event: 'updated' },
      { connectionId: second, objectType: 'crm_contact', event: 'deleted' },
      { connectionId: second, objectType: 'crm_company', event: 'created' },
      { connectionId: listConn, objectType: 'crm_contact', event: 'updated' },
    ];
    for (const spec of specs) {
      const w = await sdk.webhook.createUnifiedWebhook({ webhook: { ...spec, hookUrl: 'http://127.0.0.1:9/x' } });
      ids.push(w.id as string);
      await new Promise((r) => setTimeout(r, 5)); // distinct created_at
    }
    await api.db.updateTable('webhooks').set({ is_healthy: false }).where('id', '=', ids[1] as string).execute();
  });

  const listIds = async (req: Parameters<UnifiedTo['webhook']['listUnifiedWebhooks']>[0]) =>
    (await sdk.webhook.listUnifiedWebhooks(req)).map((w) => w.id);

  it('lists all, oldest first by default', async () => {
    expect(await listIds({})).toEqual(ids);
  });

  it('filters by object, connection_id, integration_type, is_healthy, env', async () => {
    expect(await listIds({ object: 'crm_contact' })).toEqual([ids[0], ids[2], ids[4]]);
    expect(await listIds({ connectionId: listConn })).toEqual([ids[0], ids[1], ids[4]]);
    expect(await listIds({ integrationType: 'zoho' })).toEqual([ids[2], ids[3]]);
    expect(await listIds({ isHealthy: false })).toEqual([ids[1]]);
    expect(await listIds({ isHealthy: true })).toHaveLength(4);
    expect(await listIds({ env: 'Production' })).toHaveLength(5);
    expect(await listIds({ env: 'Staging' })).toEqual([]);
  });

  it('filters by updated_gte and created_lte', async () => {
    const all = await sdk.webhook.listUnifiedWebhooks({});
    const third = all[2];
    expect(await listIds({ createdLte: (third?.createdAt as Date).toISOString() })).toEqual(ids.slice(0, 3));
    expect(await listIds({ updatedGte: (third?.updatedAt as Date).toISOString() })).toEqual(
      expect.arrayContaining([ids[2], ids[3], ids[4]]),
    );
    expect(await listIds({ updatedGte: new Date(Date.now() + 60_000).toISOString() })).toEqual([]);
  });

  it("takes the list parameters as unified.to's Python SDK writes them: limit and offset as floats, a date-time without an offset (UTC)", async () => {
    // Before, `limit=2.0` and `updated_gte=…T10:00:00` were 400s: every paged call of that SDK failed.
    const call = client(api.url, listKey);
    const paged = await call('GET', '/unified/webhook?limit=2.0&offset=2.0');
    expect(paged.status).toBe(200);
    expect(paged.body.map((w: { id: string }) => w.id)).toEqual(ids.slice(2, 4));
    const fractional = (await call('GET', '/unified/webhook?limit=1.5')).body.error;
    expect(fractional).toMatchObject({ field: 'query.limit' });
    expect(fractional.message).toMatch(/integer/);
    const all = await sdk.webhook.listUnifiedWebhooks({});
    const created = (all[2]?.createdAt as Date).toISOString();
    // The same instant without its `Z` (Python's utcnow().isoformat(), to the microsecond).
    const naive = `${created.slice(0, -1)}000`;
    const upTo = await call('GET', `/unified/webhook?created_lte=${naive}`);
    expect(upTo.body.map((w: { id: string }) => w.id)).toEqual(ids.slice(0, 3));
  });

  it('sorts and orders, pages with limit/offset', async () => {
    expect(await listIds({ sort: 'created_at', order: 'desc' })).toEqual([...ids].reverse());
    expect(await listIds({ limit: 2 })).toEqual(ids.slice(0, 2));
    expect(await listIds({ limit: 2, offset: 2 })).toEqual(ids.slice(2, 4));
    expect(await listIds({ limit: 2, offset: 4 })).toEqual(ids.slice(4));
    const byName = await sdk.webhook.listUnifiedWebhooks({ sort: 'name', order: 'asc' });
    const names = byName.map((w) => w.objectType as string);
    expect(names).toEqual([...names].sort());
    const byUpdated = await sdk.webhook.listUnifiedWebhooks({ sort: 'updated_at', order: 'desc' });
    const times = byUpdated.map((w) => (w.updatedAt as Date).getTime());
    expect(times).toEqual([...times].sort((a, b) => b - a));
  });
});

describe('connections through the SDK', () => {
  it('creates, lists, gets, updates, patches and removes; removal takes its webhooks', async () => {
    const c = await sdk.connection.createUnifiedConnection({
      integrationType: 'greenhouse',
      categories: ['ats'],
      permissions: ['ats_candidate_read'],
      externalXref: 'customer-7',
      auth: { accessToken: 'very-secret' },
    });
    expect(c).toMatchObject({ integrationType: 'greenhouse', categories: ['ats'], permissions: ['ats_candidate_read'], externalXref: 'customer-7', environment: 'Production' });
    expect(c).not.toHaveProperty('auth'); // credentials are never returned
    expect(await sdk.connection.getUnifiedConnection({ id: c.id as string })).toEqual(c);

    const listed = await sdk.connection.listUnifiedConnections({ categories: ['ats'] });
    expect(listed.map((x) => x.id)).toEqual([c.id]);
    expect((await sdk.connection.listUnifiedConnections({ externalXref: 'customer-7' })).map((x) => x.id)).toEqual([c.id]);

    const put = await sdk.connection.updateUnifiedConnection({
      id: c.id as string,
      connection: { integrationType: 'greenhouse', categories: ['ats', 'hris'], permissions: [] },
    });
    expect(put).toMatchObject({ categories: ['ats', 'hris'], permissions: [] });
    expect(put.externalXref).toBeUndefined();
    // No response shows `auth`: a PUT without it keeps the stored credentials (before, cleared),
    // unless it names another integration (whose credentials those are not).
    const authOf = async () => (await api.db.selectFrom('connections').select('auth_encrypted').where('id', '=', c.id as string).executeTakeFirstOrThrow()).auth_encrypted;
    expect(await authOf()).not.toBeNull();
    const other = await sdk.connection.createUnifiedConnection({ integrationType: 'greenhouse', categories: ['ats'], permissions: [], auth: { accessToken: 'x' } });
    await sdk.connection.updateUnifiedConnection({ id: other.id as string, connection: { integrationType: 'lever', categories: ['ats'], permissions: [] } });
    expect((await api.db.selectFrom('connections').select('auth_encrypted').where('id', '=', other.id as string).executeTakeFirstOrThrow()).auth_encrypted).toBeNull();

    // The SDK's PATCH always sends categories and permissions; [] means unchanged.
    const patched = await sdk.connection.patchUnifiedConnection({
      id: c.id as string,
      connection: { integrationType: 'greenhouse', categories: [], permissions: [], isPaused: true },
    });
    expect(patched).toMatchObject({ isPaused: true, categories: ['ats', 'hris'] });

    const hook = await sdk.webhook.createUnifiedWebhook({
      webhook: { connectionId: c.id as string, objectType: 'ats_candidate', event: 'created', hookUrl: 'http://127.0.0.1:9/h' },
    });
    await sdk.connection.removeUnifiedConnection({ id: c.id as string });
    await expect(sdk.connection.getUnifiedConnection({ id: c.id as string })).rejects.toMatchObject({ statusCode: 404 });
    await expect(sdk.webhook.getUnifiedWebhook({ id: hook.id as string })).rejects.toMatchObject({ statusCode: 404 });
  });

  it('stores credentials encrypted', async () => {
    const c = await sdk.connection.createUnifiedConnection({
      integrationType: 'lever',
      categories: ['ats'],
      permissions: [],
      auth: { accessToken: 'plain-text-must-not-be-stored' },
    });
    const row = await api.db.selectFrom('connections').select('auth_encrypted').where('id', '=', c.id as string).executeTakeFirstOrThrow();
    expect(row.auth_encrypted?.toString('latin1')).not.toContain('plain-text-must-not-be-stored');
  });
});
