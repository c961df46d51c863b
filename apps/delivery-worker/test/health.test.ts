/**
 * Health and isolation, on a stack of their own (pausing after 1.5 s of failure, 4
 * sends in flight per endpoint, 32 deliveries in flight or queued per worker): unhealthy
 * → paused → resumed, and a slow endpoint never delays a healthy one, however many
 * webhooks point at it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, startStack, type Stack } from './stack.js';

let stack: Stack;
let connectionId: string;

beforeAll(async () => {
  stack = await startStack({ env: { HEALTH_PAUSE_AFTER_SECONDS: '1.5', DELIVERY_PER_ENDPOINT_CONCURRENCY: '4', DELIVERY_CONCURRENCY: '32', DELIVERY_CLAIM_EXCLUDE_MAX: '4' } });
  connectionId = (await stack.call('POST', '/unified/connection', { integration_type: 'hubspot', categories: ['crm'], permissions: [] })).body.id;
});
afterAll(async () => stack?.close());

const at = (path: string) => () => stack.receiver.deliveries().filter((d) => d.path === path);

/** Sends `n` events of `type` one after another, each once the last has arrived at `path`; the ms each took from request to receipt. */
async function oneByOne(type: string, path: string, n: number): Promise<number[]> {
  const delays: number[] = [];
  for (let i = 0; i < n; i++) {
    const sentAt = Date.now();
    await stack.call('POST', '/v1/events', { type, data: { i } });
    await eventually(() => at(path)().length === i + 1, 10_000, `delivery ${i} at ${path}`);
    delays.push(Date.now() - sentAt);
  }
  return delays;
}

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
    const delays = await oneByOne('record:deleted', '/iso/fast', 20);
    // Each arrives while the slow endpoint still has a backlog of seconds.
    expect(Math.max(...delays)).toBeLessThan(500);
    expect(at('/iso/slow')().length).toBeLessThan(100); // still working through its backlog
    stack.receiver.setBehaviour('/iso/slow', undefined);
  });

  it('slow endpoints behind many webhooks do not take the worker from a healthy one', async () => {
    // One customer's URL behind a webhook per connection, say. The cap was per webhook: 12
    // webhooks × (4 sending + 8 queued) held all 32 of the worker's places, and every other
    // delivery waited for the slow answers (3 s each). Two such endpoints here: one behind 3
    // webhooks, which a claim leaves out (DELIVERY_CLAIM_EXCLUDE_MAX is 4), and one behind 12,
    // which it cannot: what a claim brings for that one goes back postponed.
    const many: string[] = [];
    const few: string[] = [];
    for (let i = 0; i < 12; i++) many.push((await stack.trutoWebhook('/iso/shared-slow', { event_types: ['shared:many'] })).id);
    for (let i = 0; i < 3; i++) few.push((await stack.trutoWebhook('/iso/shared-slow-few', { event_types: ['shared:few'] })).id);
    await stack.trutoWebhook('/iso/shared-fast', { event_types: ['shared:fast'] });
    stack.receiver.setBehaviour('/iso/shared-slow', { latency_ms: 3000 });
    stack.receiver.setBehaviour('/iso/shared-slow-few', { latency_ms: 3000 });
    // 480 and 300 deliveries. Those of the first are claimed a few at a time (the worker has 8
    // places left) and postponed before a claim reaches the fast endpoint's, behind them.
    const backlog = (type: string, n: number) => Array.from({ length: n }, (_, i) => ({ type, data: { i } }));
    expect((await stack.call('POST', '/v1/events/batch', { events: [...backlog('shared:many', 40), ...backlog('shared:few', 100)] })).status).toBe(202);
    await new Promise((r) => setTimeout(r, 300)); // the worker has claimed the slow endpoints' first deliveries
    const delays = await oneByOne('shared:fast', '/iso/shared-fast', 10);
    expect(Math.max(...delays)).toBeLessThan(1000);
    expect(at('/iso/shared-slow')().length).toBeLessThan(40); // 4 at a time, 3 s each: far from done
    // Handed back unsent, no attempt spent: postponed for the endpoint behind 12 webhooks (due
    // at once, it would be claimed and handed back at every claim), due at once for the other.
    const postponed = (ids: string[]) =>
      stack.database.db
        .selectFrom('deliveries')
        .select((eb) => eb.fn.countAll<string>().as('n'))
        .where('webhook_id', 'in', ids)
        .where('status', '=', 'pending')
        .where('attempts', '=', 0)
        .whereRef('next_attempt_at', '>', 'created_at')
        .executeTakeFirstOrThrow()
        .then((r) => Number(r.n));
    expect(await postponed(many)).toBeGreaterThan(0);
    expect(await postponed(few)).toBe(0);
    stack.receiver.setBehaviour('/iso/shared-slow', undefined);
    stack.receiver.setBehaviour('/iso/shared-slow-few', undefined);
  });

  it('a fast endpoint\'s backlog does not delay another webhook\'s delivery (it is never left out: claims look past it)', async () => {
    // Before, a claim read the first 4 × limit due rows, all of the backlog's, so the other
    // webhook's row was not seen until most of the backlog had been sent (3.5 s here, 10.7 s
    // with the default caps and 20,000 events of an endpoint answering in 150 ms).
    await stack.trutoWebhook('/fair/busy', { event_types: ['fair:busy'] });
    await stack.trutoWebhook('/fair/other', { event_types: ['fair:other'] });
    stack.receiver.setBehaviour('/fair/busy', { latency_ms: 20 });
    const backlog = 8_000;
    for (let b = 0; b < backlog / 1000; b++) {
      const events = Array.from({ length: 1000 }, (_, i) => ({ type: 'fair:busy', data: { i: b * 1000 + i } }));
      expect((await stack.call('POST', '/v1/events/batch', { events })).status).toBe(202);
    }
    await eventually(() => at('/fair/busy')().length >= 200, 15_000, 'the backlog being sent');
    const sentAt = Date.now();
    expect((await stack.call('POST', '/v1/events', { type: 'fair:other', data: { n: 1 } })).status).toBe(202);
    await eventually(() => at('/fair/other')().length === 1, 20_000, 'the other webhook\'s delivery');
    const waited = Date.now() - sentAt;
    const busyThen = at('/fair/busy')().length;
    await eventually(() => new Set(at('/fair/busy')().map((d) => d.webhook_id)).size === backlog, 30_000, 'the whole backlog');
    stack.receiver.setBehaviour('/fair/busy', undefined);
    // It came while the backlog was still being sent; before, after all of it (8,000). Alone it
    // comes within the first half. In full test runs on 2 loaded cores it came after 5,786,
    // 6,239 and 8,000: claims with little room (a front of 4 × limit rows) never counted as
    // behind the backlog while its share was larger than that front (fixed; lease-claims.test.ts
    // "a claim with little room"). The bound leaves room for a loaded machine.
    expect({ busyThen, waited, early: busyThen < backlog - 1_000 }).toMatchObject({ early: true });
    expect(waited).toBeLessThan(15_000);
  }, 60_000);

  it('deliveries a full endpoint handed back, in several claims, all come due and are sent: none waits for the idle re-check', async () => {
    // Postponed at different times, they fall due at different times, and the worker keeps one
    // timer: its earliest. Before, that timer's claim asked for the next due time leaving out
    // the endpoint, still full then, so the later ones had no timer and waited for the 30 s
    // idle re-check.
    const hook = await stack.trutoWebhook('/iso/bursts', { event_types: ['bursts:one'] });
    void hook;
    stack.receiver.setBehaviour('/iso/bursts', { latency_ms: 300 });
    const startedAt = Date.now();
    for (let burst = 0; burst < 3; burst++) {
      const events = Array.from({ length: 40 }, (_, i) => ({ type: 'bursts:one', data: { burst, i } }));
      expect((await stack.call('POST', '/v1/events/batch', { events })).status).toBe(202);
      await new Promise((r) => setTimeout(r, 400));
    }
    // 120 sends of 300 ms, 4 at a time: ~9 s.
    await eventually(() => new Set(at('/iso/bursts')().map((d) => d.webhook_id)).size === 120, 25_000, 'every burst delivered');
    expect(Date.now() - startedAt).toBeLessThan(20_000);
    stack.receiver.setBehaviour('/iso/bursts', undefined);
  }, 40_000);
});
