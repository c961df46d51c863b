/**
 * Deliveries that become due with no NOTIFY of their own are still sent at once, not at an
 * idle worker's 30 s re-check: the retry of a failed test send (made by the API, which no
 * worker had claimed), and a delivery handed back because its webhook changed while the
 * claim that took it was running.
 */
import { sql } from 'kysely';
import { deliveries, newId } from '@hookpost/db';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { eventually, startStack, type Stack } from './stack.js';

let stack: Stack;
beforeAll(async () => {
  stack = await startStack(); // one worker: a second would find what the first handed back
});
afterAll(async () => stack?.close());

const at = (p: string) => stack.receiver.deliveries().filter((d) => d.path === p);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// First: a worker timer left by the other test would find what it hands back.
it('a delivery handed back because its webhook changed during the claim is claimed again at once', async () => {
  const w = await stack.trutoWebhook('/wake/url-old');
  const db = stack.database.db;
  const { workspace_id } = await db.selectFrom('webhooks').select('workspace_id').where('id', '=', w.id).executeTakeFirstOrThrow();
  await db.transaction().execute(async (trx) => {
    // The claim reads events: this holds it until the URL change below is made and NOTIFYed.
    await sql`lock table events in access exclusive mode`.execute(trx);
    await deliveries.insertDelivery(db, { id: newId(), workspaceId: workspace_id, webhookId: w.id, kind: 'test', payload: { n: 1 } });
    await sleep(500);
    expect((await stack.call('PATCH', `/webhook/${w.id}`, { target_url: `${stack.receiver.url}/wake/url-new` })).status).toBe(200);
    await sleep(500);
  });
  const releasedAt = Date.now();
  await eventually(() => at('/wake/url-new').length === 1, 20_000, 'the delivery, at the new URL');
  expect(Date.now() - releasedAt).toBeLessThan(5_000);
  expect(at('/wake/url-old')).toHaveLength(0);
}, 30_000);

it('the retry of a failed POST /webhook/test goes on its schedule (100 ms here), not at the idle re-check', async () => {
  const w = await stack.trutoWebhook('/wake/test-500');
  await sleep(1000); // the worker is idle
  stack.receiver.setBehaviour('/wake/test-500', { status: 500, times: 1 });
  const sentAt = Date.now();
  expect((await stack.call('POST', '/webhook/test', { id: w.id })).body.success).toBe(false);
  await eventually(() => at('/wake/test-500').length === 2, 20_000, 'the retry');
  expect(Date.now() - sentAt).toBeLessThan(5_000);
}, 30_000);
