/**
 * A worker whose clock runs ahead of the database's. Due times are the database's (the claim
 * compares them with its now()); a worker that wrote retry times on its own clock and set its
 * wake-up timer from the database's due time on its own clock woke early, found nothing due,
 * asked again at once, and spun (about a thousand claims for a 1.5 s skew) until the
 * database's clock caught up, while sending every retry late by the skew.
 */
import { pathToFileURL } from 'node:url';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { eventually, startStack, statementsStarted, type Stack } from './stack.js';

const AHEAD_MS = 2000;
const preload = pathToFileURL(path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures/clock-ahead.mjs')).href;

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ workers: 0 });
  await stack.startWorker({ NODE_OPTIONS: `--import=${preload}`, CLOCK_AHEAD_MS: String(AHEAD_MS) });
});
afterAll(async () => stack?.close());


it('a retry falls due on the database\'s clock, and the worker waits for it without spinning', async () => {
  const w = await stack.trutoWebhook('/skew');
  stack.receiver.setBehaviour('/skew', { status: 503, retry_after: '3', times: 1 });
  await stack.call('POST', '/v1/events', { type: 'record:created', data: { skew: 1 } });
  await eventually(() => stack.receiver.deliveries().filter((d) => d.path === '/skew').length === 1, 10_000, 'the first attempt');
  const firstAt = Date.now();
  // The worker's statements from the first attempt until 0.5 s after the retry.
  const watched = statementsStarted(stack.database.db, ['hookpost-worker'], 3500);
  await eventually(() => stack.receiver.deliveries().filter((d) => d.path === '/skew').length === 2, 10_000, 'the retry');
  const retriedAfter = Date.now() - firstAt;
  // Retry-After 3 s, on the database's clock: not 3 s + the skew.
  expect(retriedAfter).toBeGreaterThanOrEqual(2900);
  expect(retriedAfter).toBeLessThan(3000 + AHEAD_MS - 500);
  // The wait was a timer, not a loop of claims: a handful of statements, not one per sample
  // (at least 70 samples: 40 or more in the 2 s a spinning worker would spin, past the limit).
  const { started, samples } = await watched;
  expect(samples).toBeGreaterThan(70);
  expect(started).toBeLessThan(30);
  expect((await stack.call('GET', `/v1/webhooks/${w.id}/deliveries`)).body.result[0].status).toBe('succeeded');
}, 30_000);

it('the poller waits for a connection falling due on the database\'s clock without spinning', async () => {
  const created = await stack.call('POST', '/unified/connection', { integration_type: 'hubspot', categories: ['crm'], permissions: [] });
  expect(created.status).toBe(200);
  await new Promise((r) => setTimeout(r, 1500)); // whatever the create woke has settled
  // Due in 4 s on the database's clock: 2 s on the worker's, which runs ahead.
  await sql`insert into connection_polls (connection_id, next_due_at) values (${created.body.id}, now() + interval '4 seconds')
            on conflict (connection_id) do update set next_due_at = excluded.next_due_at`.execute(stack.database.db);
  await sql`select pg_notify('hookpost_runs', '')`.execute(stack.database.db);
  const { started, samples } = await statementsStarted(stack.database.db, ['hookpost-poller'], 5000);
  // Claimed once it fell due: a connection with no source to poll is then left for a day.
  const row = await sql<{ not_before: Date | null }>`select not_before from connection_polls where connection_id = ${created.body.id}`.execute(stack.database.db);
  expect(row.rows[0]?.not_before?.getTime() ?? 0).toBeGreaterThan(Date.now() + 3_600_000);
  // One claim when it fell due, not one every 100 ms from the worker's "due" to the database's
  // (2 s: about 20 more; the samples, 50 ms apart at most, see each).
  expect(samples).toBeGreaterThan(100);
  expect(started).toBeLessThan(12);
}, 30_000);
