/**
 * Pausing or disabling a webhook stops its sends at once, including the deliveries a worker
 * already claimed and queued behind the webhook's per-endpoint cap: the API (or whoever
 * stopped it) NOTIFYs the workers, and they hand those deliveries back (held). Only the
 * sends in flight finish. Resuming sends the rest, each once.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { eventually, startStack, type Stack } from './stack.js';

let stack: Stack;

beforeAll(async () => {
  // One send at a time to a slow endpoint; a claim takes up to 8 of its deliveries.
  stack = await startStack({ env: { DELIVERY_PER_ENDPOINT_CONCURRENCY: '1' } });
});
afterAll(async () => stack?.close());

const at = (path: string) => stack.receiver.deliveries().filter((d) => d.path === path);

it('disabling a slow webhook sends none of what the worker had queued for it; enabling sends the rest once', async () => {
  const hook = await stack.trutoWebhook('/slow-then-stopped');
  stack.receiver.setBehaviour('/slow-then-stopped', { latency_ms: 700 });
  for (let i = 0; i < 10; i++) {
    const res = await stack.call('POST', '/v1/events', { type: 'record:created', data: { id: `q-${i}` } });
    expect(res.status).toBe(202);
  }
  await eventually(() => at('/slow-then-stopped').length >= 1, 10_000, 'the first send');

  const stop = await stack.call('PATCH', `/webhook/${hook.id}`, { is_active: false });
  expect(stop.status, JSON.stringify(stop.body)).toBe(200);
  const atStop = at('/slow-then-stopped').length;
  await new Promise((r) => setTimeout(r, 3_000)); // ~4 more sends' time at 700 ms each
  // The send in flight at the stop may still arrive; nothing queued behind it may.
  expect(at('/slow-then-stopped').length).toBeLessThanOrEqual(atStop + 1);
  const list = (await stack.call('GET', `/v1/webhooks/${hook.id}/deliveries?limit=100`)).body.result as { status: string }[];
  expect(list.filter((d) => d.status === 'held').length).toBeGreaterThanOrEqual(10 - atStop - 1);

  stack.receiver.setBehaviour('/slow-then-stopped', undefined);
  expect((await stack.call('PATCH', `/webhook/${hook.id}`, { is_active: true })).status).toBe(200);
  await eventually(() => new Set(at('/slow-then-stopped').map((d) => (d.body as { payload: { id: string } }).payload.id)).size === 10, 15_000, 'all ten after enabling');
  expect(at('/slow-then-stopped')).toHaveLength(10);
}, 40_000);
