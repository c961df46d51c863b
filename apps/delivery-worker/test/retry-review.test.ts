/**
 * Review of what an attempt's outcome decides, end to end (real API and worker): a
 * Retry-After that asks for no wait or is not a valid value, the last try timing out,
 * a pause while a delivery is in flight, a 410 holding the rest, a webhook deleted
 * mid-send, an unpause, and a retry due further out than a Node timer can wait.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, startStack, statementsStarted, type Stack } from './stack.js';

let stack: Stack;
let connectionId: string;

beforeAll(async () => {
  stack = await startStack({ env: { HEALTH_PAUSE_AFTER_SECONDS: '3', RETRY_AFTER_MAX_SECONDS: '4000000' } });
  connectionId = (await stack.call('POST', '/unified/connection', { integration_type: 'hubspot', categories: ['crm'], permissions: [] })).body.id;
});
afterAll(async () => stack?.close());

interface Attempt {
  outcome: string;
  started_at: string;
}

async function deliveriesOf(webhookId: string): Promise<{ id: string; status: string; attempts: number; last_error: string | null }[]> {
  return (await stack.call('GET', `/v1/webhooks/${webhookId}/deliveries?limit=100`)).body.result;
}
async function attemptsOf(deliveryId: string): Promise<Attempt[]> {
  return (await stack.call('GET', `/v1/deliveries/${deliveryId}/attempts`)).body;
}
const gapsOf = (log: Attempt[]) => log.slice(1).map((a, i) => Date.parse(a.started_at) - Date.parse(log[i]?.started_at ?? ''));
const at = (path: string) => stack.receiver.deliveries().filter((d) => d.path === path);

async function unifiedWebhook(path: string, objectType: string) {
  const res = await stack.call('POST', '/unified/webhook', { connection_id: connectionId, object_type: objectType, event: 'created', hook_url: `${stack.receiver.url}${path}` });
  expect(res.status).toBe(200);
  stack.receiver.addSecret((await stack.call('GET', `/v1/webhooks/${res.body.id}/secret`)).body.secret);
  return res.body.id as string;
}

describe('Retry-After edge values', () => {
  it.each(['0', '-1', '1.5', 'Wed, 21 Oct 2015 07:28:00 GMT'])('429 with Retry-After %j: retried on the schedule, not at once', async (value) => {
    const path = `/ra/${encodeURIComponent(value)}`;
    const w = await stack.trutoWebhook(path);
    stack.receiver.setBehaviour(path, { status: 429, retry_after: value, times: 2 });
    await stack.call('POST', '/v1/events', { type: 'record:created', data: { value } });
    const d = await eventually(async () => (await deliveriesOf(w.id)).find((x) => x.status === 'succeeded'), 10_000, 'delivered');
    const log = await attemptsOf(d.id);
    expect(log.map((a) => a.outcome)).toEqual(['http_429', 'http_429', 'success']);
    const gaps = gapsOf(log);
    // The schedule (1 s, 2 s × RETRY_TIME_SCALE 0.1): before the fix both gaps were ~0.
    expect(gaps[0]).toBeGreaterThanOrEqual(90);
    expect(gaps[1]).toBeGreaterThanOrEqual(190);
  });
});

describe('outcomes', () => {
  it('the last try timing out: the delivery is dead, its last error a timeout', async () => {
    const w = await stack.trutoWebhook('/review/timeout');
    stack.receiver.setBehaviour('/review/timeout', { latency_ms: 1500 });
    await stack.call('POST', '/v1/events', { type: 'record:created', data: { n: 'timeout' } });
    const d = await eventually(async () => (await deliveriesOf(w.id)).find((x) => x.status === 'dead'), 15_000, 'dead');
    expect(d.attempts).toBe(4);
    expect(d.last_error).toMatch(/timeout/);
    expect((await attemptsOf(d.id)).map((a) => a.outcome)).toEqual(['timeout', 'timeout', 'timeout', 'timeout']);
    stack.receiver.setBehaviour('/review/timeout', undefined);
  });

  it('an answer with a NUL character is logged with U+FFFD and does not keep other results from being recorded', async () => {
    // Postgres cannot store NUL in text: before the fix the batch of completions it was in
    // failed every time, its deliveries stayed delivering and were sent again after the lease.
    const bad = await stack.trutoWebhook('/review/nul', { event_types: ['record:updated'] });
    const good = await stack.trutoWebhook('/review/nul-ok', { event_types: ['record:updated'] });
    stack.receiver.setBehaviour('/review/nul', { status: 500, body: 'bad\u0000answer', times: 1 });
    await stack.call('POST', '/v1/events', { type: 'record:updated', data: { n: 'nul' } });
    const sent = await eventually(async () => (await deliveriesOf(bad.id)).find((x) => x.status === 'succeeded'), 10_000, 'retried and delivered');
    expect((await attemptsOf(sent.id)).map((a) => (a as Attempt & { response_snippet?: string }).response_snippet)).toEqual(['bad\ufffdanswer', expect.any(String)]);
    await eventually(async () => (await deliveriesOf(good.id)).find((x) => x.status === 'succeeded'), 5000, 'the other delivered and recorded');
    expect(at('/review/nul-ok')).toHaveLength(1);
  });

  it('paused while an attempt is in flight: its retry is held, not sent; resume sends it', async () => {
    const id = await unifiedWebhook('/review/pause-in-flight', 'crm_deal');
    stack.receiver.setBehaviour('/review/pause-in-flight', { status: 500, latency_ms: 600 });
    await stack.call('POST', '/v1/events', { type: 'record:created', object_type: 'crm_deal', connection_id: connectionId, data: { id: 'p-1' } });
    await eventually(async () => (await deliveriesOf(id))[0]?.status === 'delivering', 5000, 'in flight');
    expect((await stack.call('PATCH', `/unified/webhook/${id}`, { is_paused: true })).status).toBe(200);
    const held = await eventually(async () => (await deliveriesOf(id)).find((x) => x.status === 'held'), 5000, 'held');
    await new Promise((r) => setTimeout(r, 800));
    expect(await attemptsOf(held.id)).toHaveLength(1);
    stack.receiver.setBehaviour('/review/pause-in-flight', undefined);
    expect((await stack.call('PUT', `/unified/webhook/${id}/resume`)).body).toMatchObject({ is_paused: false, is_healthy: true });
    await eventually(async () => (await deliveriesOf(id)).find((x) => x.id === held.id)?.status === 'succeeded', 5000, 'sent after resume');
  });

  it('410 disables the webhook and holds the rest; resume delivers them', async () => {
    const id = await unifiedWebhook('/review/gone', 'crm_lead');
    stack.receiver.setBehaviour('/review/gone', { status: 410, latency_ms: 300, times: 1 });
    await stack.call('POST', '/v1/events', { type: 'record:created', object_type: 'crm_lead', connection_id: connectionId, data: { id: 'g-1' } });
    await eventually(async () => (await deliveriesOf(id))[0]?.status === 'delivering', 5000, 'in flight');
    // Queued while the 410 is on its way: held once the webhook is disabled.
    await stack.call('POST', '/v1/events', { type: 'record:created', object_type: 'crm_lead', connection_id: connectionId, data: { id: 'g-2' } });
    await eventually(async () => (await stack.call('GET', `/unified/webhook/${id}`)).body.is_paused === true, 5000, 'disabled');
    const list = await eventually(async () => {
      const l = await deliveriesOf(id);
      return l.some((x) => x.status === 'dead') ? l : null;
    });
    expect(list.filter((x) => x.status === 'dead')).toHaveLength(1);
    await stack.call('PUT', `/unified/webhook/${id}/resume`);
    await eventually(async () => (await deliveriesOf(id)).filter((x) => x.status === 'succeeded').length === list.length - 1, 5000, 'the rest delivered');
  });

  it('a webhook deleted while its delivery is in flight: nothing is left, nothing more is sent', async () => {
    const w = await stack.trutoWebhook('/review/deleted');
    stack.receiver.setBehaviour('/review/deleted', { status: 500, latency_ms: 500 });
    await stack.call('POST', '/v1/events', { type: 'record:created', data: { n: 'deleted' } });
    await eventually(async () => (await deliveriesOf(w.id))[0]?.status === 'delivering', 5000, 'in flight');
    expect((await stack.call('DELETE', `/webhook/${w.id}`)).status).toBeLessThan(300);
    await new Promise((r) => setTimeout(r, 1500));
    const left = await stack.database.db.selectFrom('deliveries').select('id').where('webhook_id', '=', w.id).execute();
    expect(left).toHaveLength(0);
    expect(at('/review/deleted').length).toBeLessThanOrEqual(1);
    expect(stack.workers[0]?.child.exitCode).toBeNull();
    stack.receiver.setBehaviour('/review/deleted', undefined);
  });
});

describe('unpause', () => {
  // Before the fix the unpause kept the streak's start (`failing_since`): the first
  // failure after it found the webhook "failing for longer than 3 s" and paused it again.
  it.each(['unified', 'truto'])('after an automatic pause, an unpause (%s face) gives the webhook a new HEALTH_PAUSE_AFTER_SECONDS (3 s) before pausing again', async (face) => {
    const path = `/review/unpause-${face}`;
    const id = await unifiedWebhook(path, face === 'unified' ? 'hris_employee' : 'hris_group');
    stack.receiver.setBehaviour(path, { status: 500 });
    const send = (n: number) => stack.call('POST', '/v1/events', { type: 'record:created', object_type: face === 'unified' ? 'hris_employee' : 'hris_group', connection_id: connectionId, data: { id: `u-${n}` } });
    const paused = async () => (await stack.call('GET', `/unified/webhook/${id}`)).body.is_paused === true;
    let n = 0;
    await eventually(async () => {
      await send(n++);
      return paused();
    }, 15_000, 'paused');
    const unpause = face === 'unified' ? stack.call('PATCH', `/unified/webhook/${id}`, { is_paused: false }) : stack.call('PATCH', `/webhook/${id}`, { is_active: true });
    expect((await unpause).status).toBe(200);
    const unpausedAt = Date.now();
    const before = at(path).length;
    await send(1000);
    await eventually(() => at(path).length > before + 2, 5000, 'failures after the unpause');
    await new Promise((r) => setTimeout(r, 800)); // their health recorded
    expect(await paused()).toBe(false);
    // Still failing: paused again once 3 s have passed.
    await eventually(async () => {
      await send(n++);
      return paused();
    }, 10_000, 'paused again');
    expect(Date.now() - unpausedAt).toBeGreaterThanOrEqual(2900);
    stack.receiver.setBehaviour(path, undefined);
  });
});

describe('a retry due in more than 24.8 days', () => {
  it('does not spin the worker (a Node timer that long fires at once)', async () => {
    const w = await stack.trutoWebhook('/review/far');
    // Retry-After 3,000,000 s (~35 days; RETRY_AFTER_MAX_SECONDS is 4,000,000 here).
    stack.receiver.setBehaviour('/review/far', { status: 503, retry_after: '3000000', times: 1 });
    await stack.call('POST', '/v1/events', { type: 'record:created', data: { n: 'far' } });
    await eventually(async () => (await deliveriesOf(w.id))[0]?.status === 'pending' && (await deliveriesOf(w.id))[0]?.attempts === 1, 5000, 'scheduled far out');
    await new Promise((r) => setTimeout(r, 300));
    const pid = stack.workers[0]?.child.pid;
    const cpu = () => {
      const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
      return Number(f[11]) + Number(f[12]); // utime + stime, clock ticks (1/100 s)
    };
    const cpu0 = cpu();
    const { started, samples } = await statementsStarted(stack.database.db, ['hookpost-worker'], 2000);
    const cpu1 = cpu();
    // Idle: a handful of ticks and statements. Spinning: ~2 claims per ms, a new statement at
    // nearly every sample (hundreds; at least 40 however loaded the host, more than the limit).
    expect(samples).toBeGreaterThan(40);
    expect(cpu1 - cpu0).toBeLessThan(40);
    expect(started).toBeLessThan(30);
    await stack.call('DELETE', `/webhook/${w.id}`);
  });
});
