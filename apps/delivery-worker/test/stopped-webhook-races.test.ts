/**
 * What races between a stop (pause, disable) or a resume and the worker can leave behind,
 * and how it is put right. A release or a retry that read the webhook just before a stop
 * committed writes `pending` after the stop held the rest; a claim, release or retry that
 * read it just before a resume committed writes `held` after the resume released the rest.
 * The rows are written here directly, as those races leave them, to test the repair
 * deterministically: the claim holds what it finds pending for a stopped webhook, and the
 * lease reaper requeues what it finds held for a webhook resumed in the last minutes.
 */
import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { deliveries } from '@hookpost/db';
import { eventually, receivedTwice, resentWithoutTimeout, startStack, type Stack } from './stack.js';

let stack: Stack;

beforeAll(async () => {
  stack = await startStack(); // lease 5 s: the reaper runs every 2.5 s
});
afterAll(async () => stack?.close());

const at = (path: string) => stack.receiver.deliveries().filter((d) => d.path === path);

async function workspaceOf(webhookId: string): Promise<string> {
  const r = await sql<{ workspace_id: string }>`select workspace_id from webhooks where id = ${webhookId}`.execute(stack.database.db);
  return r.rows[0]!.workspace_id;
}

async function statusOf(deliveryId: string): Promise<{ status: string; attempts: number }> {
  const r = await sql<{ status: string; attempts: number }>`select status, attempts from deliveries where id = ${deliveryId}`.execute(stack.database.db);
  return r.rows[0]!;
}

/** Writes a delivery as a race leaves it (a pending one NOTIFYs the workers, so the claim runs at once). */
async function leftBehind(webhookId: string, status: 'pending' | 'held'): Promise<string> {
  const id = randomUUID();
  const row = await deliveries.insertDelivery(stack.database.db, { id, workspaceId: await workspaceOf(webhookId), webhookId, kind: 'test', payload: { n: id }, status });
  expect(row?.status).toBe(status);
  return id;
}

it('a delivery left pending for a disabled webhook is held by the claim and never sent; enabling sends it once', async () => {
  const hook = await stack.trutoWebhook('/stray-pending');
  expect((await stack.call('PATCH', `/webhook/${hook.id}`, { is_active: false })).status).toBe(200);
  const id = await leftBehind(hook.id, 'pending');
  await eventually(async () => (await statusOf(id)).status === 'held', 10_000, 'the claim holds it');
  expect((await statusOf(id)).attempts).toBe(0);
  await new Promise((r) => setTimeout(r, 1_000));
  expect(at('/stray-pending')).toHaveLength(0);

  expect((await stack.call('PATCH', `/webhook/${hook.id}`, { is_active: true })).status).toBe(200);
  await eventually(async () => (await statusOf(id)).status === 'succeeded', 10_000, 'sent after enabling');
  expect(at('/stray-pending')).toHaveLength(1);
}, 30_000);

it('a delivery left held for a webhook resumed minutes ago is requeued by the reaper and sent once; one of a stopped webhook stays held', async () => {
  const live = await stack.trutoWebhook('/stray-held');
  const stopped = await stack.trutoWebhook('/held-and-stopped');
  expect((await stack.call('PATCH', `/webhook/${stopped.id}`, { is_active: false })).status).toBe(200);
  const strayId = await leftBehind(live.id, 'held');
  const keptId = await leftBehind(stopped.id, 'held');

  await eventually(async () => (await statusOf(strayId)).status === 'succeeded', 10_000, 'the reaper requeues it');
  expect(at('/stray-held')).toHaveLength(1);
  await new Promise((r) => setTimeout(r, 3_000)); // more than one reaper tick
  expect((await statusOf(keptId)).status).toBe('held');
  expect(at('/held-and-stopped')).toHaveLength(0);
}, 30_000);

it('deliveries of a webhook left without a URL (a database target) are held, not claimed and handed back at every claim; other webhooks are served', async () => {
  // Before the fix the claim took them, the engine found no target and released them as
  // pending with their old due time: the oldest rows at every claim, a backlog of them
  // (4 × the claim's batch) kept every other webhook from being sent to at all.
  const urlless = await stack.trutoWebhook('/urlless');
  const other = await stack.trutoWebhook('/urlless-other');
  const workspaceId = await workspaceOf(urlless.id);
  await sql`update webhooks set hook_url = null, db_type = 'postgres', db_url_encrypted = decode('00', 'hex') where id = ${urlless.id}`.execute(stack.database.db);
  await sql`insert into deliveries (id, workspace_id, webhook_id, kind, payload, status, next_attempt_at)
            select hookpost_uuid_v7(), ${workspaceId}, ${urlless.id}, 'test', '{}', 'pending', now() - interval '1 hour' from generate_series(1, 300)`.execute(stack.database.db);
  const sent = await leftBehind(other.id, 'pending');
  await eventually(async () => (await statusOf(sent)).status === 'succeeded', 10_000, 'the other webhook served');
  const counts = async () =>
    (await sql<{ status: string; n: number }>`select status, count(*)::int as n from deliveries where webhook_id = ${urlless.id} group by status`.execute(stack.database.db)).rows;
  await eventually(async () => (await counts()).every((c) => c.status === 'held'), 10_000, 'all held');
  expect(await counts()).toEqual([{ status: 'held', n: 300 }]);
  const attempts = await sql<{ n: number }>`select count(*)::int as n from delivery_attempts where webhook_id = ${urlless.id}`.execute(stack.database.db);
  expect(attempts.rows[0]?.n).toBe(0);
  // A URL again: the lease reaper requeues them (webhooks changed in the last minutes).
  await sql`update webhooks set hook_url = ${`${stack.receiver.url}/urlless`}, db_type = null, db_url_encrypted = null, updated_at = now() where id = ${urlless.id}`.execute(stack.database.db);
  await eventually(() => at('/urlless').length === 300, 15_000, 'sent once it has a URL');
}, 40_000);

it('a URL change sends what the worker had queued for the webhook to the new URL; only sends in flight go to the old one', async () => {
  // Before the fix, deliveries claimed and queued behind the per-endpoint cap (32 here, up
  // to twice that queued) kept the target built at their claim: the old URL and secret.
  const hook = await stack.trutoWebhook('/moving-old');
  stack.receiver.setBehaviour('/moving-old', { latency_ms: 700 }); // under the 1 s send timeout
  const events = Array.from({ length: 96 }, (_, n) => ({ type: 'record:created', data: { moving: n } }));
  expect((await stack.call('POST', '/v1/events/batch', { events })).status).toBe(202);
  const claimed = async () =>
    (await sql<{ n: number }>`select count(*)::int as n from deliveries where webhook_id = ${hook.id} and status = 'delivering'`.execute(stack.database.db)).rows[0]?.n ?? 0;
  await eventually(async () => (await claimed()) >= 64, 5000, 'sends in flight and more queued');
  expect((await stack.call('PATCH', `/webhook/${hook.id}`, { target_url: `${stack.receiver.url}/moving-new` })).status).toBe(200);
  const ids = () => [...at('/moving-old'), ...at('/moving-new')].map((d) => d.webhook_id);
  await eventually(() => new Set(ids()).size >= 96, 20_000, 'all delivered').catch(async (e: unknown) => {
    const rows = await sql`select status, attempts, count(*)::int from deliveries where webhook_id = ${hook.id} group by 1, 2`.execute(stack.database.db);
    throw new Error(`${String(e)}: old ${at('/moving-old').length}, new ${at('/moving-new').length}, rows ${JSON.stringify(rows.rows)}`);
  });
  expect(new Set(ids()).size).toBe(96);
  // Each once, but for sends retried after a timeout (by design).
  const twice = receivedTwice(ids());
  expect(await resentWithoutTimeout(stack, twice)).toEqual([]);
  expect(at('/moving-old').length - twice.length).toBeLessThanOrEqual(40);
  expect(at('/moving-new').length).toBeGreaterThanOrEqual(56);
}, 40_000);
