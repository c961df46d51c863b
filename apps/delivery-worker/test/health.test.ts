/**
 * Health and isolation, on a stack of their own (pausing after 1.5 s of failure, 4
 * sends in flight per endpoint): unhealthy → paused → resumed, and a slow endpoint
 * never delays a healthy one.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, startStack, type Stack } from './stack.js';

let stack: Stack;
let connectionId: string;

beforeAll(async () => {
  stack = await startStack({ env: { HEALTH_PAUSE_AFTER_SECONDS: '1.5', DELIVERY_PER_ENDPOINT_CONCURRENCY: '4' } });
  connectionId = (await stack.call('POST', '/unified/connection', { integration_type: 'hubspot', categories: ['crm'], permissions: [] })).body.id;
});
afterAll(async () => stack?.close());

const at = (path: string) => () => stack.receiver.deliveries().filter((d) => d.path === path);

async function unifiedWebhook(path: string, extra: Record<string, unknown> = {}) {
  const res = await stack.call('POST', '/unified/webhook', { connection_id: connectionId, object_type: 'crm_contact', event: 'created', hook_url: `${stack.receiver.url}${path}`, ...extra });
  expect(res.status).toBe(200);
  stack.receiver.addSecret((await stack.call('GET', `/v1/webhooks/${res.body.id}/secret`)).body.secret);
  return { id: res.body.id as string };
}

describe('health', () => {
  it('consecutive failures → unhealthy → paused (queue held) → resume delivers what is pending', async () => {
    const w = await unifiedWebhook('/health/flaky', { object_type: 'hris_employee' });
    stack.receiver.setBehaviour('/health/flaky', { status: 500 });
    const send = (n: number) => stack.call('POST', '/v1/events', { type: 'record:created', object_type: 'hris_employee', connection_id: connectionId, data: { id: `e-${n}` } });
    await send(0);
    await eventually(async () => (await stack.call('GET', `/unified/webhook/${w.id}`)).body.is_healthy === false, 10_000, 'unhealthy');
    const unhealthy = (await stack.call('GET', `/unified/webhook/${w.id}`)).body;
    expect(unhealthy.checked_at).toBeDefined();
    // Keep failing past HEALTH_PAUSE_AFTER_SECONDS (1.5 s): paused.
    let n = 1;
    await eventually(
      async () => {
        await send(n++);
        return (await stack.call('GET', `/unified/webhook/${w.id}`)).body.is_paused === true;
      },
      15_000,
      'paused',
    );
    expect((await stack.call('GET', `/webhook/${w.id}`)).body.is_active).toBe(false); // the Truto face's view of a pause
    const held = await eventually(async () => {
      const r = await stack.call('GET', `/v1/webhooks/${w.id}/deliveries?status=held`);
      return r.body.result.length ? r.body.result : null;
    });
    // Paused webhooks take no new events.
    const count = async () => (await stack.call('GET', `/v1/webhooks/${w.id}/deliveries?limit=100`)).body.result.length;
    const before = await count();
    await send(999);
    expect(await count()).toBe(before);

    stack.receiver.setBehaviour('/health/flaky', undefined);
    const resumed = await stack.call('PUT', `/unified/webhook/${w.id}/resume`);
    expect(resumed.body).toMatchObject({ is_healthy: true, is_paused: false });
    for (const h of held as { id: string }[]) {
      await eventually(async () => (await stack.call('GET', `/v1/deliveries/${h.id}`)).body.status === 'succeeded', 10_000, `held ${h.id} delivered`);
    }
  });

  it('an endpoint answering only 429 stays healthy and is never paused: it is up and asks for fewer', async () => {
    // Before, every 429 counted as a failure: unhealthy after the threshold, paused after 1.5 s.
    const w = await unifiedWebhook('/health/limited', { object_type: 'hris_group' });
    stack.receiver.setBehaviour('/health/limited', { status: 429, retry_after: '1' });
    for (let n = 0; n < 4; n++) await stack.call('POST', '/v1/events', { type: 'record:created', object_type: 'hris_group', connection_id: connectionId, data: { id: `l-${n}` } });
    await eventually(() => at('/health/limited')().length >= 8, 10_000, 'retried several times');
    await new Promise((r) => setTimeout(r, 2000)); // past HEALTH_PAUSE_AFTER_SECONDS
    expect((await stack.call('GET', `/unified/webhook/${w.id}`)).body).toMatchObject({ is_healthy: true, is_paused: false });
    stack.receiver.setBehaviour('/health/limited', undefined);
  });

  it('a slow endpoint does not delay a healthy one', async () => {
    const slow = await stack.trutoWebhook('/iso/slow', { event_types: ['record:updated'] });
    const fast = await stack.trutoWebhook('/iso/fast', { event_types: ['record:deleted'] });
    void slow;
    void fast;
    stack.receiver.setBehaviour('/iso/slow', { latency_ms: 800 });
    const backlog = Array.from({ length: 200 }, (_, i) => ({ type: 'record:updated', data: { i } }));
    expect((await stack.call('POST', '/v1/events/batch', { events: backlog })).status).toBe(202);
    await eventually(() => at('/iso/slow')().length >= 4); // the slow endpoint is busy
    const delays: number[] = [];
    for (let i = 0; i < 20; i++) {
      const sentAt = Date.now();
      await stack.call('POST', '/v1/events', { type: 'record:deleted', data: { i } });
      await eventually(() => at('/iso/fast')().length === i + 1, 5_000, 'fast endpoint delivery');
      delays.push(Date.now() - sentAt);
    }
    // Each arrives while the slow endpoint still has a backlog of seconds.
    expect(Math.max(...delays)).toBeLessThan(500);
    expect(at('/iso/slow')().length).toBeLessThan(100); // still working through its backlog
    stack.receiver.setBehaviour('/iso/slow', undefined);
  });
});

