/**
 * Events in → signed deliveries out, through real processes and real HTTP: signatures
 * of both faces, matching and projection, retries, Retry-After, 410, replay, secret
 * rotation and idempotent ingest. Health, pause and endpoint isolation: health.test.ts.
 */
import { randomUUID } from 'node:crypto';
import { verifyStandard, verifyTruto, verifyUnified } from '@hookpost/contract/signing';
import { sql } from 'kysely';
import type { ReceivedDelivery } from '@hookpost/mock-receiver';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, startStack, type Stack } from './stack.js';

let stack: Stack;
let connectionId: string;

beforeAll(async () => {
  stack = await startStack();
  const conn = await stack.call('POST', '/unified/connection', { integration_type: 'hubspot', categories: ['crm'], permissions: [], external_xref: 'customer-1' });
  connectionId = conn.body.id;
});
afterAll(async () => stack?.close());

const at = (path: string) => () => stack.receiver.deliveries().filter((d) => d.path === path);
const event = (data: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
  stack.call('POST', '/v1/events', { type: 'record:created', object_type: 'crm_contact', connection_id: connectionId, data, ...extra });

async function unifiedWebhook(path: string, extra: Record<string, unknown> = {}) {
  const res = await stack.call('POST', '/unified/webhook', {
    connection_id: connectionId,
    object_type: 'crm_contact',
    event: 'created',
    hook_url: `${stack.receiver.url}${path}`,
    ...extra,
  });
  expect(res.status).toBe(200);
  const secret = (await stack.call('GET', `/v1/webhooks/${res.body.id}/secret`)).body.secret as string;
  stack.receiver.addSecret(secret);
  return { id: res.body.id as string, secret };
}

async function attemptsOf(webhookId: string) {
  const deliveries = (await stack.call('GET', `/v1/webhooks/${webhookId}/deliveries`)).body.result as { id: string; status: string; attempts: number }[];
  return Promise.all(deliveries.map(async (d) => ({ ...d, log: (await stack.call('GET', `/v1/deliveries/${d.id}/attempts`)).body as { attempt: number; outcome: string; started_at: string; status_code?: number }[] })));
}

describe('signed deliveries', () => {
  it('delivers to both faces with Standard Webhooks, unified sig/sig256 and X-Truto-Signature all valid', async () => {
    const unified = await unifiedWebhook('/sig/unified', { fields: 'name,emails' });
    const truto = await stack.trutoWebhook('/sig/truto', { event_types: ['record:created'] });
    const accepted = await event({ id: 'c-1', name: 'Ada', emails: ['ada@example.com'], phone: '123', raw: { vendor: true } });
    expect(accepted.status).toBe(202);
    expect(accepted.body.deliveries).toBeGreaterThanOrEqual(2);

    const [u] = await eventually(() => (at('/sig/unified')().length ? at('/sig/unified')() : null));
    const [t] = await eventually(() => (at('/sig/truto')().length ? at('/sig/truto')() : null));
    for (const d of [u, t] as ReceivedDelivery[]) expect(d.verified).toBe(true);
    expect(u?.signatures).toEqual({ standard: 'valid', unified: 'valid', truto: 'absent' });
    expect(t?.signatures).toEqual({ standard: 'valid', unified: 'absent', truto: 'valid' });

    // unified face: {data[], webhook, nonce, sig, sig256, type, external_xref}; `fields` projects, raw dropped.
    expect(u?.body).toMatchObject({
      data: [{ id: 'c-1', name: 'Ada', emails: ['ada@example.com'] }],
      webhook: { id: unified.id, connection_id: connectionId, object_type: 'crm_contact', event: 'created' },
      type: 'NATIVE',
      external_xref: 'customer-1',
    });
    const ubody = u?.body as { data: unknown[]; nonce: string; sig: string; sig256: string };
    expect(Object.keys(ubody.data[0] as object).sort()).toEqual(['emails', 'id', 'name']);
    expect(verifyUnified([unified.secret], ubody)).toEqual({ ok: true });

    // Truto face: {id, event, payload, environment_id, created_at, webhook_id}.
    expect(t?.body).toMatchObject({ id: accepted.body.id, event: 'record:created', payload: { id: 'c-1', name: 'Ada', phone: '123' }, webhook_id: truto.id });
    expect((t?.body as { payload: object }).payload).not.toHaveProperty('raw');
    expect(verifyStandard([truto.secret], t?.headers ?? {}, t?.raw_body ?? '')).toEqual({ ok: true });

    // webhook-id is the delivery's id.
    const listed = await eventually(async () => {
      const r = (await stack.call('GET', `/v1/webhooks/${truto.id}/deliveries`)).body.result;
      return r[0]?.status === 'succeeded' ? r : null;
    });
    expect(listed[0]).toMatchObject({ id: t?.webhook_id, status: 'succeeded', attempts: 1, event_id: accepted.body.id });
  });

  it('include_raw keeps raw; filters, object_type, connection and event types decide who gets what', async () => {
    await unifiedWebhook('/match/raw', { include_raw: true });
    await unifiedWebhook('/match/owner42', { filters: { owner_id: '42' } });
    await unifiedWebhook('/match/deals', { object_type: 'crm_deal' });
    await unifiedWebhook('/match/updated', { event: 'updated' });
    await event({ id: 'm-1', owner_id: '42', raw: { a: 1 } });
    await event({ id: 'm-2', owner_id: '7' });
    await event({ id: 'm-3', owner_id: 42 }); // compared as text: 42 matches "42"
    await eventually(() => at('/match/raw')().length === 3);
    await eventually(() => at('/match/owner42')().length >= 2);
    await new Promise((r) => setTimeout(r, 300));
    // Sends to one endpoint run side by side, so arrival order is not publication order.
    const records = at('/match/raw')().map((d) => (d.body as { data: { id: string; raw?: unknown }[] }).data[0]);
    expect(records.find((r) => r?.id === 'm-1')?.raw).toEqual({ a: 1 });
    expect(at('/match/owner42')().map((d) => (d.body as { data: { id: string }[] }).data[0]?.id).sort()).toEqual(['m-1', 'm-3']);
    expect(at('/match/deals')()).toHaveLength(0);
    expect(at('/match/updated')()).toHaveLength(0);
  });
});

describe('the record as sent', () => {
  it('arrives as published: a `__proto__` key is kept, like any other', async () => {
    // Before, the contract's schema copied `data` key by key, and a `__proto__` key, assigned
    // to a plain object, set its prototype instead: the record arrived without it.
    await stack.trutoWebhook('/as-published');
    const raw = '{"type":"record:created","data":{"id":"p-1","__proto__":{"polluted":true},"nested":{"__proto__":1}}}';
    const res = await fetch(`${stack.apiUrl}/v1/events`, { method: 'POST', headers: { authorization: `Bearer ${stack.key}`, 'content-type': 'application/json' }, body: raw });
    expect(res.status).toBe(202);
    const [d] = await eventually(() => (at('/as-published')().length ? at('/as-published')() : null));
    const payload = JSON.parse(d?.raw_body ?? '{}').payload as Record<string, unknown>;
    expect(Object.keys(payload)).toContain('__proto__');
    // (jsonb keeps keys in its own order: shorter keys first.)
    expect(JSON.stringify(payload)).toBe('{"id":"p-1","nested":{"__proto__":1},"__proto__":{"polluted":true}}');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('keeps numbers a double cannot hold (64-bit ids, long decimals) exactly as published, on both faces, projected or not, with every signature valid', async () => {
    // JSON.parse reads 12345678901234567890 as 12345678901234567000: before, that is what was
    // stored and sent.
    const truto = await stack.trutoWebhook('/exact/truto');
    const unified = await unifiedWebhook('/exact/unified', { fields: 'id,big,dec,list' });
    const numbers = '"big":12345678901234567890,"neg":-9007199254740993,"dec":0.12345678901234567890123,"ok":1.5,"ts":1733356800000,"s":"12345678901234567890","list":[18446744073709551615,2]';
    const post = (path: string, body: string) =>
      fetch(`${stack.apiUrl}${path}`, { method: 'POST', headers: { authorization: `Bearer ${stack.key}`, 'content-type': 'application/json' }, body });
    // The fast path, and Express's (a query string sends a request there), single and batch.
    // x-2 has a `raw`, which the Truto face drops: its payload is parsed and written again.
    const sent = [
      await post('/v1/events', `{"type":"record:created","object_type":"crm_contact","connection_id":"${connectionId}","data":{"id":"x-1",${numbers}}}`),
      await post('/v1/events?via=express', `{"type":"record:created","object_type":"crm_contact","connection_id":"${connectionId}","data":{"id":"x-2",${numbers},"raw":{"v":1}}}`),
      await post('/v1/events/batch', `{"events":[{"type":"record:created","object_type":"crm_contact","connection_id":"${connectionId}","data":{"id":"x-3",${numbers}}}]}`),
    ];
    expect(sent.map((r) => r.status)).toEqual([202, 202, 202]);
    // A number where the contract wants a string is still refused.
    expect((await post('/v1/events', `{"type":"record:created","id":12345678901234567890,"data":{}}`)).status).toBe(400);
    for (const path of ['/exact/truto', '/exact/unified']) {
      const got = await eventually(() => (at(path)().length >= 3 ? at(path)() : null));
      expect(got.map((d) => d.verified)).toEqual([true, true, true]);
      for (const d of got) {
        // (jsonb writes a space after `:` and `,`; the stored text is sent as is when nothing is projected.)
        const body = d.raw_body.replace(/([:,]) /g, '$1');
        for (const n of ['"big":12345678901234567890', '"dec":0.12345678901234567890123', '"list":[18446744073709551615,2]']) expect(body).toContain(n);
        if (path === '/exact/truto') for (const n of ['"neg":-9007199254740993', '"s":"12345678901234567890"', '"ts":1733356800000', '"ok":1.5']) expect(body).toContain(n);
        else expect(d.raw_body).not.toContain('"neg"');
        expect(d.raw_body).not.toContain('hp-exact');
      }
    }
    expect(at('/exact/unified')().every((d) => d.signatures.unified === 'valid')).toBe(true);
    // Past a double's range a number is read as JSON.parse reads it (null), not kept: jsonb would
    // write 1e131071 out as 131 KB at every read, and refuses 1e131072 (a 500 for the commit).
    expect((await post('/v1/events', '{"type":"record:created","data":{"id":"x-4","x":1e131071,"y":1e131072}}')).status).toBe(202);
    const huge = await eventually(() => at('/exact/truto')().find((d) => d.raw_body.includes('"x-4"')));
    expect(huge.raw_body.replace(/([:,]) /g, '$1')).toContain('"x":null');
    expect(unified.id && truto.id).toBeTruthy();
  });
});

describe('retries', () => {
  it('retries after 500s on the schedule until a 2xx', async () => {
    const w = await stack.trutoWebhook('/retry/500');
    stack.receiver.setBehaviour('/retry/500', { status: 500, times: 2 });
    await stack.call('POST', '/v1/events', { type: 'record:created', data: { n: 1 }, connection_id: undefined });
    const [d] = await eventually(async () => {
      const list = await attemptsOf(w.id);
      return list[0]?.status === 'succeeded' ? list : null;
    });
    expect(d?.attempts).toBe(3);
    expect(d?.log.map((a) => a.outcome)).toEqual(['http_500', 'http_500', 'success']);
    const gaps = (d?.log ?? []).slice(1).map((a, i) => Date.parse(a.started_at) - Date.parse(d?.log[i]?.started_at ?? ''));
    expect(gaps[0]).toBeGreaterThanOrEqual(90); // 1 s × 0.1
    expect(gaps[1]).toBeGreaterThanOrEqual(190); // 2 s × 0.1
    // Every attempt carried the same webhook-id.
    expect(new Set(at('/retry/500')().map((x) => x.webhook_id)).size).toBe(1);
  });

  it('retries after a timeout', async () => {
    const w = await stack.trutoWebhook('/retry/slow');
    stack.receiver.setBehaviour('/retry/slow', { latency_ms: 1500, times: 1 });
    await stack.call('POST', '/v1/events', { type: 'record:created', data: { n: 2 } });
    const [d] = await eventually(async () => ((await attemptsOf(w.id))[0]?.status === 'succeeded' ? attemptsOf(w.id) : null));
    expect(d?.log.map((a) => a.outcome)).toEqual(['timeout', 'success']);
  });

  it('honours Retry-After on 429 and 503', async () => {
    for (const status of [429, 503]) {
      const path = `/retry/after-${status}`;
      const w = await stack.trutoWebhook(path);
      stack.receiver.setBehaviour(path, { status, retry_after: '2', times: 1 });
      await stack.call('POST', '/v1/events', { type: 'record:created', data: { status } });
      const [d] = await eventually(async () => ((await attemptsOf(w.id))[0]?.status === 'succeeded' ? attemptsOf(w.id) : null), 10_000);
      expect(d?.log.map((a) => a.outcome)).toEqual([`http_${status}`, 'success']);
      const gap = Date.parse(d?.log[1]?.started_at ?? '') - Date.parse(d?.log[0]?.started_at ?? '');
      expect(gap).toBeGreaterThanOrEqual(1900); // the schedule alone would wait 100 ms
    }
  });

  it('interleaved retries each run on their own schedule (none waits for the 30 s idle check)', async () => {
    // A fails at 0, 100, 300, 600 ms and is dead; B, 50 ms later, retries at 650 ms: a retry
    // asked for while an earlier one's timer is set must still wake the worker.
    const w = await stack.trutoWebhook('/retry/interleaved');
    stack.receiver.setBehaviour('/retry/interleaved', { status: 500 });
    await stack.call('POST', '/v1/events', { type: 'record:created', data: { n: 'a' } });
    await new Promise((r) => setTimeout(r, 50));
    await stack.call('POST', '/v1/events', { type: 'record:created', data: { n: 'b' } });
    await eventually(async () => {
      const r = await stack.call('GET', `/v1/webhooks/${w.id}/deliveries?status=dead`);
      return r.body.result.length === 2;
    }, 8000, 'both deliveries dead on schedule');
    stack.receiver.setBehaviour('/retry/interleaved', undefined);
  });

  it('gives up after the last attempt: the delivery is dead and listed as such', async () => {
    const w = await stack.trutoWebhook('/retry/always-500');
    stack.receiver.setBehaviour('/retry/always-500', { status: 500 });
    await stack.call('POST', '/v1/events', { type: 'record:created', data: { n: 3 } });
    const dead = await eventually(async () => {
      const r = await stack.call('GET', `/v1/webhooks/${w.id}/deliveries?status=dead`);
      return r.body.result.length ? r.body.result : null;
    });
    expect(dead[0]).toMatchObject({ status: 'dead', attempts: 4, last_status_code: 500 });
    expect(at('/retry/always-500')()).toHaveLength(4);
    // Three consecutive failures made it unhealthy.
    const u = await stack.call('GET', `/webhook/${w.id}`);
    expect(u.status).toBe(200);
    const row = await stack.database.db.selectFrom('webhooks').select(['is_healthy', 'checked_at', 'consecutive_failures']).where('id', '=', w.id).executeTakeFirstOrThrow();
    expect(row).toMatchObject({ is_healthy: false, consecutive_failures: 4 });
    expect(row.checked_at).toBeInstanceOf(Date);
    stack.receiver.setBehaviour('/retry/always-500', undefined);
  });

  it('410 Gone disables the webhook; later events are not sent to it', async () => {
    const w = await stack.trutoWebhook('/gone');
    stack.receiver.setBehaviour('/gone', { status: 410 });
    await stack.call('POST', '/v1/events', { type: 'record:created', data: { n: 4 } });
    await eventually(async () => (await stack.call('GET', `/webhook/${w.id}`)).body.is_active === false);
    const [d] = await attemptsOf(w.id);
    expect(d).toMatchObject({ status: 'dead', attempts: 1 });
    const next = await stack.call('POST', '/v1/events', { type: 'record:created', data: { n: 5 } });
    expect(next.status).toBe(202);
    await new Promise((r) => setTimeout(r, 300));
    expect(at('/gone')()).toHaveLength(1);
  });
});

describe('deletion', () => {
  const stored = async (webhookId: string) => {
    const db = stack.database.db;
    const deliveries = await db.selectFrom('deliveries').select((eb) => eb.fn.countAll<string>().as('n')).where('webhook_id', '=', webhookId).executeTakeFirstOrThrow();
    const attempts = await db.selectFrom('delivery_attempts').select((eb) => eb.fn.countAll<string>().as('n')).where('webhook_id', '=', webhookId).executeTakeFirstOrThrow();
    return { deliveries: Number(deliveries.n), attempts: Number(attempts.n) };
  };

  it('deleting a webhook, or its connection, answers at once; the worker then deletes its deliveries and their attempt log', async () => {
    const truto = await stack.trutoWebhook('/deleted/truto', { event_types: ['record:updated'] });
    const conn = await stack.call('POST', '/unified/connection', { integration_type: 'hubspot', categories: ['crm'], permissions: [] });
    const unified = await stack.call('POST', '/unified/webhook', { connection_id: conn.body.id, object_type: 'crm_contact', event: 'updated', hook_url: `${stack.receiver.url}/deleted/unified` });
    expect(unified.status).toBe(200);
    await stack.call('POST', '/v1/events', { type: 'record:updated', object_type: 'crm_contact', connection_id: conn.body.id, data: { id: 'del-1' } });
    await eventually(async () => {
      const [a, b] = await Promise.all([stored(truto.id), stored(unified.body.id)]);
      return a.attempts === 1 && b.attempts === 1;
    });

    // The delete answers at once; the worker, told by NOTIFY, deletes what it left.
    expect((await stack.call('DELETE', `/webhook/${truto.id}`)).status).toBeLessThan(300);
    await eventually(async () => (await stored(truto.id)).deliveries === 0, 5000, 'the purge');
    expect(await stored(truto.id)).toEqual({ deliveries: 0, attempts: 0 });
    expect(await stored(unified.body.id)).toEqual({ deliveries: 1, attempts: 1 });

    expect((await stack.call('DELETE', `/unified/connection/${conn.body.id}`)).status).toBeLessThan(300);
    await eventually(async () => (await stored(unified.body.id)).deliveries === 0, 5000, 'the purge');
    expect(await stored(unified.body.id)).toEqual({ deliveries: 0, attempts: 0 });
    const records = await stack.database.db.selectFrom('deleted_webhooks').select('webhook_id').execute();
    expect(records).toEqual([]);
  });

  it('a delivery whose webhook is gone is dropped when claimed, not retried at every lease', async () => {
    // Only code older than migration 0006 makes one (a delete during a rolling upgrade).
    const db = stack.database.db;
    const ws = await db.selectFrom('workspaces').select('id').executeTakeFirstOrThrow();
    const id = randomUUID();
    await sql`insert into deliveries (id, workspace_id, webhook_id, kind, payload, status) values (${id}, ${ws.id}, ${randomUUID()}, 'test', '{}', 'pending')`.execute(db);
    await sql`select pg_notify('hookpost_deliveries', '')`.execute(db);
    await eventually(async () => (await db.selectFrom('deliveries').select('id').where('id', '=', id).executeTakeFirst()) === undefined);
  });
});

describe('replay, rotation, idempotency', () => {
  it('replays one delivery, and all failed ones of a webhook since a time', async () => {
    const w = await stack.trutoWebhook('/replay');
    stack.receiver.setBehaviour('/replay', { status: 500 });
    const since = new Date(Date.now() - 1000).toISOString();
    await stack.call('POST', '/v1/events/batch', { events: [1, 2, 3].map((n) => ({ type: 'record:created', data: { n } })) });
    const dead = await eventually(async () => {
      const r = await stack.call('GET', `/v1/webhooks/${w.id}/deliveries?status=dead`);
      return r.body.result.length === 3 ? r.body.result : null;
    });
    stack.receiver.setBehaviour('/replay', undefined);
    const one = await stack.call('POST', `/v1/deliveries/${dead[0].id}/replay`);
    expect(one).toMatchObject({ status: 202, body: { count: 1 } });
    await eventually(async () => (await stack.call('GET', `/v1/deliveries/${one.body.deliveries[0]}`)).body.status === 'succeeded');
    expect((await stack.call('GET', `/v1/deliveries/${one.body.deliveries[0]}`)).body.replay_of).toBe(dead[0].id);

    // The webhook's replay takes the two dead ones not replayed yet, not dead[0] again.
    const all = await stack.call('POST', `/v1/webhooks/${w.id}/replay`, { since });
    expect(all.body.count).toBe(2);
    expect(all.body.deliveries).not.toContain(dead[0].id);
    for (const id of all.body.deliveries) {
      await eventually(async () => (await stack.call('GET', `/v1/deliveries/${id}`)).body.status === 'succeeded').catch(async (e: unknown) => {
        // Seen once under load (not reproduced since): say where the delivery stood.
        const rows = await stack.database.db.selectFrom('deliveries').select(['id', 'status', 'attempts', 'next_attempt_at', 'lease_until']).where('webhook_id', '=', w.id).execute();
        throw new Error(`${String(e)}; at ${new Date().toISOString()} the webhook's deliveries were ${JSON.stringify(rows)}`);
      });
    }
    const ok = at('/replay')().filter((d) => d.status === 200);
    expect(new Set(ok.map((d) => d.webhook_id)).size).toBe(3); // distinct: a retry after a slow answer repeats its id
    expect(ok.every((d) => d.verified)).toBe(true);
    // Everything delivered: replaying again copies nothing (before, each replay copied every
    // dead original and earlier copy again: 2 → 4 → 8 rows for a still-failing endpoint).
    expect((await stack.call('POST', `/v1/webhooks/${w.id}/replay`, { since })).body).toEqual({ count: 0, deliveries: [] });
  });

  it('a replay of a delivery still waiting for its retry sends that one now, with its webhook-id, and copies nothing', async () => {
    const w = await stack.trutoWebhook('/replay-waiting');
    stack.receiver.setBehaviour('/replay-waiting', { status: 503, retry_after: '5', times: 1 });
    const since = new Date(Date.now() - 1000).toISOString();
    await stack.call('POST', '/v1/events', { type: 'record:created', data: { waiting: 1 } });
    const [waiting] = await eventually(async () => {
      const r = (await stack.call('GET', `/v1/webhooks/${w.id}/deliveries?status=pending`)).body.result;
      return r.length === 1 && r[0].attempts === 1 ? r : null;
    });
    const replayed = await stack.call('POST', `/v1/webhooks/${w.id}/replay`, { since });
    expect(replayed.body).toEqual({ count: 1, deliveries: [waiting.id] });
    const startedAt = Date.now();
    await eventually(async () => (await stack.call('GET', `/v1/deliveries/${waiting.id}`)).body.status === 'succeeded', 4000, 'sent now, not after its Retry-After');
    expect(Date.now() - startedAt).toBeLessThan(4000);
    expect((await stack.call('GET', `/v1/webhooks/${w.id}/deliveries`)).body.result).toHaveLength(1);
    expect(new Set(at('/replay-waiting')().map((d) => d.webhook_id))).toEqual(new Set([waiting.id]));
  });

  it('rotates the secret: during the overlap both signatures are sent; after it, only the new', async () => {
    const w = await stack.trutoWebhook('/rotate');
    const rotated = await stack.call('POST', `/v1/webhooks/${w.id}/rotate-secret`, { overlap_seconds: 3600 });
    expect(rotated.body).toMatchObject({ previous_secret: w.secret });
    expect(rotated.body.secret).not.toBe(w.secret);
    expect((await stack.call('GET', `/v1/webhooks/${w.id}/secret`)).body.secret).toBe(rotated.body.secret);
    await stack.call('POST', '/v1/events', { type: 'record:created', data: { r: 1 } });
    const [d] = await eventually(() => (at('/rotate')().length ? at('/rotate')() : null));
    const body = d?.raw_body ?? '';
    expect(d?.headers['webhook-signature']?.split(' ')).toHaveLength(2);
    expect(verifyStandard([w.secret], d?.headers ?? {}, body)).toEqual({ ok: true }); // old secret still verifies
    expect(verifyStandard([rotated.body.secret], d?.headers ?? {}, body)).toEqual({ ok: true });
    // X-Truto-Signature holds one signature: the previous secret's until the overlap ends
    // (before, the new one's at once: a Truto receiver had no overlap at all).
    expect(verifyTruto([w.secret], d?.headers['x-truto-signature'], body)).toEqual({ ok: true });
    expect(verifyTruto([rotated.body.secret], d?.headers['x-truto-signature'], body).ok).toBe(false);

    const again = await stack.call('POST', `/v1/webhooks/${w.id}/rotate-secret`, { overlap_seconds: 0 });
    expect(again.body.previous_secret).toBeUndefined();
    stack.receiver.addSecret(again.body.secret);
    await stack.call('POST', '/v1/events', { type: 'record:created', data: { r: 2 } });
    const second = await eventually(() => (at('/rotate')().length === 2 ? at('/rotate')()[1] : null));
    expect(second.headers['webhook-signature']?.split(' ')).toHaveLength(1);
    expect(verifyStandard([rotated.body.secret], second.headers, second.raw_body).ok).toBe(false);
    expect(verifyStandard([again.body.secret], second.headers, second.raw_body)).toEqual({ ok: true });
    expect(verifyTruto([again.body.secret], second.headers['x-truto-signature'], second.raw_body)).toEqual({ ok: true });
  });

  it('a changed URL applies to the next delivery (a target is reused only while its webhook is unchanged)', async () => {
    const w = await stack.trutoWebhook('/moves-a');
    await stack.call('POST', '/v1/events', { type: 'record:created', data: { m: 1 } });
    const [first] = await eventually(() => (at('/moves-a')().length ? at('/moves-a')() : null));
    expect(first?.body).toMatchObject({ payload: { m: 1 } });
    expect((await stack.call('PATCH', `/webhook/${w.id}`, { target_url: `${stack.receiver.url}/moves-b` })).status).toBe(200);
    await stack.call('POST', '/v1/events', { type: 'record:created', data: { m: 2 } });
    const [moved] = await eventually(() => (at('/moves-b')().length ? at('/moves-b')() : null));
    expect(moved?.body).toMatchObject({ payload: { m: 2 } });
    expect(moved?.verified).toBe(true);
    expect(at('/moves-a')()).toHaveLength(1);
  });

  it('ingest is idempotent by Idempotency-Key and by event id', async () => {
    await stack.trutoWebhook('/idem');
    const before = await stack.database.db.selectFrom('events').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    const body = { type: 'record:created', data: { k: 1 } };
    const first = await stack.call('POST', '/v1/events', body, { 'idempotency-key': 'key-1' });
    const repeat = await stack.call('POST', '/v1/events', body, { 'idempotency-key': 'key-1' });
    expect(first.status).toBe(202);
    expect(repeat).toEqual(first);
    const mismatch = await stack.call('POST', '/v1/events', { ...body, data: { k: 2 } }, { 'idempotency-key': 'key-1' });
    expect(mismatch.status).toBe(409);
    expect(mismatch.body.error.field).toBe('header.idempotency-key');

    // Concurrent repeats of one key: one event.
    const concurrent = await Promise.all(Array.from({ length: 10 }, () => stack.call('POST', '/v1/events', { type: 'record:created', data: { k: 3 } }, { 'idempotency-key': 'key-2' })));
    expect(new Set(concurrent.map((r) => r.body.id)).size).toBe(1);

    const e1 = await stack.call('POST', '/v1/events', { id: 'evt_42', type: 'record:created', data: { k: 4 } });
    const e2 = await stack.call('POST', '/v1/events', { id: 'evt_42', type: 'record:created', data: { k: 4 } });
    expect(e2.body).toMatchObject({ id: e1.body.id, duplicate: true, deliveries: e1.body.deliveries });
    const batch = await stack.call('POST', '/v1/events/batch', { events: [{ id: 'evt_42', type: 'record:created', data: {} }, { id: 'evt_43', type: 'record:created', data: {} }, { id: 'evt_43', type: 'record:created', data: {} }] });
    expect(batch.body.events.map((e: { duplicate: boolean }) => e.duplicate)).toEqual([true, false, true]);

    const after = await stack.database.db.selectFrom('events').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    expect(Number(after.n) - Number(before.n)).toBe(4); // key-1, key-2, evt_42, evt_43
  });

  it('group-commits concurrent single-event requests; every one is delivered', async () => {
    await stack.trutoWebhook('/group', { event_types: ['integrated_account:active'] });
    const results = await Promise.all(Array.from({ length: 100 }, (_, i) => stack.call('POST', '/v1/events', { type: 'integrated_account:active', data: { i } })));
    expect(results.every((r) => r.status === 202 && r.body.deliveries >= 1)).toBe(true);
    // Under load a send can outlast the 1 s test timeout and be retried (same webhook-id):
    // count distinct deliveries.
    await eventually(() => new Set(at('/group')().map((d) => d.webhook_id)).size >= 100, 30_000, '100 group-committed deliveries');
    expect(new Set(at('/group')().map((d) => d.webhook_id)).size).toBe(100);
  });

  it('bad events are a 400 naming the field and store nothing', async () => {
    const before = await stack.database.db.selectFrom('events').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    const cases: [unknown, string][] = [
      [{ data: {} }, 'body.type'],
      [{ type: 'created', data: {} }, 'body.type'],
      [{ type: 'record:created' }, 'body.data'],
      [{ type: 'record:created', data: [] }, 'body.data'],
      [{ type: 'record:created', data: {}, connection_id: 'x' }, 'body.connection_id'],
      [{ type: 'record:created', data: {}, connection_id: '7d1b1f3e-1111-4a2b-9c3d-0123456789ab' }, 'body.connection_id'],
    ];
    for (const [body, field] of cases) {
      const r = await stack.call('POST', '/v1/events', body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.body.error.field).toBe(field);
    }
    const tooMany = await stack.call('POST', '/v1/events/batch', { events: Array.from({ length: 1001 }, () => ({ type: 'record:created', data: {} })) });
    expect(tooMany.status).toBe(400);
    expect(tooMany.body.error.field).toBe('body.events');
    const oneBad = await stack.call('POST', '/v1/events/batch', { events: [{ type: 'record:created', data: {} }, { type: 'record:created', data: {}, connection_id: '7d1b1f3e-1111-4a2b-9c3d-0123456789ab' }] });
    expect(oneBad.body.error.field).toBe('body.events.1.connection_id');
    const after = await stack.database.db.selectFrom('events').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    expect(after.n).toEqual(before.n);
  });
});
