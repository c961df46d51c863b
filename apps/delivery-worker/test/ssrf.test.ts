/**
 * The SSRF guard, end to end: without an allow-list the API refuses hook URLs that point
 * at loopback, private, link-local or metadata addresses (on create, replace and patch,
 * on both faces); a worker without an allow-list refuses to connect to them even when
 * the API let the webhook in; an explicit allow-list lets deliveries reach them.
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, startStack, type Stack } from './stack.js';

/** Hook URLs the guard must refuse; `port` is a live local port (the receiver's). */
function refusedUrls(port: number): string[] {
  return [
    `http://127.0.0.1:${port}/hook`,
    `http://localhost:${port}/hook`,
    'http://10.0.0.1/',
    'http://169.254.169.254/latest/meta-data',
    'http://[::1]/',
    'http://192.168.1.10/',
  ];
}

/** A public address: allowed, and never contacted here (nothing is delivered to it). */
const PUBLIC_URL = 'https://93.184.215.14/hook';

async function webhookCount(stack: Stack): Promise<number> {
  const r = await sql<{ n: number }>`select count(*)::int as n from webhooks`.execute(stack.database.db);
  return Number(r.rows[0]?.n);
}

function expectRefused(res: { status: number; body: any }, field: string, url: string) { // eslint-disable-line @typescript-eslint/no-explicit-any
  expect(res.status, `${url}: ${JSON.stringify(res.body)}`).toBe(400);
  expect(res.body.error.code, url).toBe('validation_failed');
  expect(res.body.error.field, url).toBe(field);
  expect(res.body.error.message, url).toMatch(/private or special-purpose address/);
}

describe('no allow-list: the API refuses private and special-purpose hook URLs', () => {
  let stack: Stack;
  let connectionId: string;
  let port: number;
  beforeAll(async () => {
    // An empty value is dropped by loadConfig: the API runs with no allow-list at all.
    stack = await startStack({ workers: 0, apiEnv: { HOOKPOST_SSRF_ALLOWLIST: '' } });
    port = Number(new URL(stack.receiver.url).port);
    const conn = await stack.call('POST', '/unified/connection', { integration_type: 'hubspot', categories: ['crm'], permissions: [] });
    expect(conn.status).toBe(200);
    connectionId = conn.body.id;
  });
  afterAll(async () => stack?.close());

  it('refuses them on create, on both faces, naming the field, and creates nothing', async () => {
    for (const url of refusedUrls(port)) {
      expectRefused(await stack.call('POST', '/webhook', { target_url: url }), 'body.target_url', url);
      expectRefused(
        await stack.call('POST', '/unified/webhook', { connection_id: connectionId, object_type: 'crm_contact', event: 'created', hook_url: url }),
        'body.hook_url',
        url,
      );
    }
    expect(await webhookCount(stack)).toBe(0);
    expect((await stack.call('GET', '/webhook')).body.result).toEqual([]);
    expect((await stack.call('GET', '/unified/webhook')).body).toEqual([]);

    // A public address is fine: the refusals above are the guard, not the faces.
    const ok = await stack.call('POST', '/webhook', { target_url: PUBLIC_URL });
    expect(ok.status).toBe(201);
    expect(await webhookCount(stack)).toBe(1);
  });

  it('refuses them on update (PATCH on both faces, PUT on unified) and keeps the old URL', async () => {
    const truto = await stack.call('POST', '/webhook', { target_url: PUBLIC_URL });
    expect(truto.status).toBe(201);
    const unified = await stack.call('POST', '/unified/webhook', { connection_id: connectionId, object_type: 'crm_contact', event: 'created', hook_url: PUBLIC_URL });
    expect(unified.status).toBe(200);

    for (const url of refusedUrls(port)) {
      expectRefused(await stack.call('PATCH', `/webhook/${truto.body.id}`, { target_url: url }), 'body.target_url', url);
      expectRefused(await stack.call('PATCH', `/unified/webhook/${unified.body.id}`, { hook_url: url }), 'body.hook_url', url);
      expectRefused(
        await stack.call('PUT', `/unified/webhook/${unified.body.id}`, { connection_id: connectionId, object_type: 'crm_contact', event: 'created', hook_url: url }),
        'body.hook_url',
        url,
      );
    }
    expect((await stack.call('GET', `/webhook/${truto.body.id}`)).body.target_url).toBe(PUBLIC_URL);
    expect((await stack.call('GET', `/unified/webhook/${unified.body.id}`)).body.hook_url).toBe(PUBLIC_URL);
    const rows = await stack.database.db.selectFrom('webhooks').select('hook_url').execute();
    expect(rows.map((r) => r.hook_url)).toEqual(rows.map(() => PUBLIC_URL));
  });
});

describe('worker without an allow-list: refused at connect time', () => {
  let stack: Stack;
  beforeAll(async () => {
    // The API allows loopback (so the webhooks can be created); the worker allows nothing.
    stack = await startStack({
      workers: 0,
      env: { HOOKPOST_SSRF_ALLOWLIST: '' },
      apiEnv: { HOOKPOST_SSRF_ALLOWLIST: '127.0.0.0/8,::1/128' },
    });
    await stack.startWorker();
  });
  afterAll(async () => stack?.close());

  it('never connects: every attempt is blocked_address, the delivery dies, the receiver gets nothing', async () => {
    const port = new URL(stack.receiver.url).port;
    // An IP literal (checked before connecting) and a name resolving to loopback (checked in the lookup).
    const literal = await stack.call('POST', '/webhook', { target_url: `http://127.0.0.1:${port}/ssrf/literal` });
    const named = await stack.call('POST', '/webhook', { target_url: `http://localhost:${port}/ssrf/named` });
    expect(literal.status).toBe(201);
    expect(named.status).toBe(201);

    const accepted = await stack.call('POST', '/v1/events', { type: 'record:created', data: { id: 'ssrf-1' } });
    expect(accepted.status).toBe(202);
    expect(accepted.body.deliveries).toBe(2);

    for (const hook of [literal.body.id as string, named.body.id as string]) {
      const [dead] = await eventually(
        async () => {
          const list = (await stack.call('GET', `/v1/webhooks/${hook}/deliveries?status=dead`)).body.result as { id: string; status: string; attempts: number }[];
          return list.length > 0 ? list : null;
        },
        15_000,
        'the delivery to die',
      );
      expect(dead).toMatchObject({ status: 'dead', attempts: 4 }); // RETRY_SCHEDULE 1,2,3: four attempts
      const attempts = (await stack.call('GET', `/v1/deliveries/${dead?.id}/attempts`)).body as { attempt: number; outcome: string; status_code?: number; error?: string }[];
      expect(attempts.map((a) => a.attempt)).toEqual([1, 2, 3, 4]);
      for (const a of attempts) {
        expect(a.outcome).toBe('blocked_address');
        expect(a.status_code).toBeUndefined();
        expect(a.error).toMatch(/private or special-purpose address/);
      }
    }
    expect(stack.receiver.deliveries()).toEqual([]);
  });
});

describe('explicit allow-list', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack(); // HOOKPOST_SSRF_ALLOWLIST=127.0.0.0/8 for the API and the worker
  });
  afterAll(async () => stack?.close());

  it('lets a delivery reach the loopback receiver', async () => {
    const hook = await stack.trutoWebhook('/allowed');
    const accepted = await stack.call('POST', '/v1/events', { type: 'record:created', data: { id: 'allowed-1' } });
    expect(accepted.status).toBe(202);
    const [got] = await eventually(() => {
      const list = stack.receiver.deliveries().filter((d) => d.path === '/allowed');
      return list.length > 0 ? list : null;
    });
    expect(got?.verified).toBe(true);
    expect(got?.body).toMatchObject({ id: accepted.body.id, webhook_id: hook.id });
    const [row] = await eventually(async () => {
      const list = (await stack.call('GET', `/v1/webhooks/${hook.id}/deliveries`)).body.result as { id: string; status: string; attempts: number }[];
      return list[0]?.status === 'succeeded' ? list : null;
    });
    expect(row).toMatchObject({ id: got?.webhook_id, attempts: 1 });
    const attempts = (await stack.call('GET', `/v1/deliveries/${row?.id}/attempts`)).body as { outcome: string; status_code?: number }[];
    expect(attempts).toMatchObject([{ outcome: 'success', status_code: 200 }]);
  });
});
