/**
 * Connections that go silent (a NAT or load balancer forgetting a flow, a host gone
 * without a FIN, a failover that moved the address) raise no error. The worker asks its
 * LISTEN connection `select 1` every DELIVERY_LISTEN_HEARTBEAT_MS and replaces it when no
 * answer comes, so NOTIFY wakes it again within moments, not at its 30 s idle re-check;
 * and a statement unanswered for DATABASE_QUERY_TIMEOUT_MS closes its connection, so the
 * claim loop, the poller and the API go on, instead of waiting ~15 min for TCP to give up.
 * The API and the worker reach Postgres here through a TCP proxy that can freeze the
 * connections of one application_name: their bytes stop in both directions and their
 * sockets stay open.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { serverUrl } from '@hookpost/testkit';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { eventually, type Proc, type Stack } from './stack.js';
import { startVirtualKit, type VirtualKit } from './virtual-kit.js';

/**
 * Forwards TCP to `target`. `freeze(name)` silences the open connections whose session has
 * that application_name; `cut(name)` closes them and turns new ones away until `restore(name)`.
 */
async function startFreezingProxy(target: { host: string; port: number }) {
  const links: { name: string; frozen: boolean; close: () => void }[] = [];
  const refused = new Set<string>();
  const all = new Set<Socket>();
  const proxy: Server = createServer((client) => {
    const server = connect(target.port, target.host);
    all.add(client).add(server);
    const close = () => {
      client.destroy();
      server.destroy();
    };
    const link = { name: '', frozen: false, close };
    links.push(link);
    let first = true;
    client.on('data', (chunk) => {
      // The startup message carries application_name in the clear (no TLS on loopback).
      if (first) link.name = /application_name\0([^\0]*)\0/.exec(chunk.toString('latin1'))?.[1] ?? '';
      first = false;
      if (refused.has(link.name)) return close();
      if (!link.frozen) server.write(chunk);
    });
    server.on('data', (chunk) => {
      if (!link.frozen) client.write(chunk);
    });
    client.on('close', close).on('error', close);
    server.on('close', close).on('error', close);
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  return {
    port: (proxy.address() as AddressInfo).port,
    connections: (name: string) => links.filter((l) => l.name === name).length,
    freeze: (name: string) => {
      for (const l of links) if (l.name === name) l.frozen = true;
    },
    cut: (name: string) => {
      refused.add(name);
      for (const l of links) if (l.name === name) l.close();
    },
    restore: (name: string) => refused.delete(name),
    close: async () => {
      for (const s of all) s.destroy();
      await new Promise<void>((r) => proxy.close(() => r()));
    },
  };
}

const LISTEN = 'hookpost-worker-listen';
const DELIVERY = 'hookpost-worker';
const POLLER = 'hookpost-poller';
const API = 'hookpost-api';
let kit: VirtualKit;
let stack: Stack;
let proxy: Awaited<ReturnType<typeof startFreezingProxy>>;
let worker: Proc;

beforeAll(async () => {
  const server = new URL(serverUrl());
  proxy = await startFreezingProxy({ host: server.hostname, port: Number(server.port || 5432) });
  const viaProxy = (databaseUrl: string) => {
    const url = new URL(databaseUrl);
    url.hostname = '127.0.0.1';
    url.port = String(proxy.port);
    return url.toString();
  };
  kit = await startVirtualKit({ workers: 0, apiDatabaseUrl: viaProxy, env: { DATABASE_QUERY_TIMEOUT_MS: '1000' } });
  stack = kit.stack;
  worker = await stack.startWorker({ DATABASE_URL: viaProxy(stack.database.url), DELIVERY_LISTEN_HEARTBEAT_MS: '500' });
});

afterAll(async () => {
  await kit?.close();
  await proxy?.close();
});

async function publishOne(tag: string): Promise<number> {
  const res = await stack.call('POST', '/v1/events', { type: 'record:created', data: { id: tag } });
  expect(res.status, JSON.stringify(res.body)).toBe(202);
  return Date.now();
}

const arrived = (tag: string) =>
  stack.receiver.deliveries().some((d) => (d.body as { payload?: { id?: string } }).payload?.id === tag);

it('replaces a LISTEN connection that stopped answering, and NOTIFY wakes the worker again', async () => {
  await stack.trutoWebhook('/heartbeat');
  expect(proxy.connections(LISTEN)).toBe(1);
  await publishOne('before');
  await eventually(() => arrived('before'), 5_000, 'the first event');

  proxy.freeze(LISTEN);
  await eventually(() => worker.output().includes('listen connection unresponsive; reconnecting'), 5_000, 'the worker giving up on the silent connection');
  await eventually(() => proxy.connections(LISTEN) === 2, 5_000, 'a new LISTEN connection');
  // The worker re-checks the queue on reconnecting; give that re-check time to end, so
  // what delivers the next event is a NOTIFY.
  await new Promise((r) => setTimeout(r, 500));

  const sentAt = await publishOne('after');
  await eventually(() => arrived('after'), 5_000, 'the event published after the freeze');
  expect(Date.now() - sentAt).toBeLessThan(5_000); // the idle re-check is 30 s away
}, 30_000);

it('a statement on a delivery session that stopped answering closes it, and the next claim delivers', async () => {
  await publishOne('warm');
  await eventually(() => arrived('warm'), 5_000, 'an event before the freeze');
  const frozen = proxy.connections(DELIVERY);
  expect(frozen).toBeGreaterThan(0);
  proxy.freeze(DELIVERY); // every delivery session open now: the next statements meet them

  const sentAt = await publishOne('frozen');
  await eventually(() => arrived('frozen'), 15_000, 'the event published after the freeze');
  expect(Date.now() - sentAt).toBeLessThan(15_000);
  expect(worker.output()).toContain('no answer from Postgres within 1000 ms');
  expect(proxy.connections(DELIVERY)).toBeGreaterThan(frozen); // new sessions took over
  expect(worker.child.exitCode).toBeNull();
}, 30_000);

it('a statement of the API that gets no answer closes its session: that request is a 503, a retry is accepted once', async () => {
  await publishOne('api-warm');
  const frozen = proxy.connections(API);
  expect(frozen).toBeGreaterThan(0);
  proxy.freeze(API); // the pool's idle sessions: the next request's statements meet them

  const event = { id: 'evt-api-frozen', type: 'record:created', data: { id: 'api-frozen' } };
  const startedAt = Date.now();
  const first = await stack.call('POST', '/v1/events', event);
  expect(Date.now() - startedAt).toBeLessThan(10_000);
  expect(first.status, JSON.stringify(first.body)).toBe(503);
  expect(first.body.error.code).toBe('unavailable');
  // Retried as a client would: answered on new sessions; the event id makes it one event.
  await eventually(async () => (await stack.call('POST', '/v1/events', event)).status === 202, 15_000, 'the retry accepted');
  expect(proxy.connections(API)).toBeGreaterThan(frozen);
  await eventually(() => arrived('api-frozen'), 10_000, 'the retried event delivered');
  const again = await stack.call('POST', '/v1/events', event);
  expect(again.status).toBe(202);
  await new Promise((r) => setTimeout(r, 500));
  expect(stack.receiver.deliveries().filter((d) => (d.body as { payload?: { id?: string } }).payload?.id === 'api-frozen')).toHaveLength(1);
}, 40_000);

it('a statement of the poller that gets no answer closes its session, and the next run delivers the change', async () => {
  const token = 'tok-frozen-poller';
  const connection = await kit.connection(token);
  const webhook = await kit.webhook(connection, '/frozen-poller');
  await kit.runsAfter(webhook, 0);
  const frozen = proxy.connections(POLLER);
  expect(frozen).toBeGreaterThan(0);
  proxy.freeze(POLLER);

  const id = kit.created(token);
  await eventually(() => kit.ids('/frozen-poller').includes(id), 20_000, 'the change made after the freeze');
  expect(proxy.connections(POLLER)).toBeGreaterThan(frozen);
  expect(worker.child.exitCode).toBeNull();
}, 40_000);

it('while Postgres turns the listener away, its reconnect failures are one line, and its return another', async () => {
  const lines = (msg: string) => worker.output().split('\n').filter((l) => l.includes(`"msg":"${msg}"`));
  const before = { failed: lines('reconnect failed').length, back: lines('listen connection back').length };
  proxy.cut(LISTEN);
  await eventually(() => lines('reconnect failed').length > before.failed, 5_000, 'the first failed reconnect');
  await new Promise((r) => setTimeout(r, 3_500)); // three more tries, a second apart
  expect(lines('reconnect failed')).toHaveLength(before.failed + 1);
  proxy.restore(LISTEN);
  await eventually(() => lines('listen connection back').length > before.back, 5_000, 'the listener back');
  const back = JSON.parse(lines('listen connection back').at(-1) ?? '{}') as { failures?: number };
  expect(back.failures).toBeGreaterThanOrEqual(4);

  const sentAt = await publishOne('after-cut');
  await eventually(() => arrived('after-cut'), 5_000, 'an event after the listener came back');
  expect(Date.now() - sentAt).toBeLessThan(5_000);
}, 30_000);

it('a pause made while the LISTEN connection was down holds what the worker had queued, once the connection is back', async () => {
  // The pause's notice is lost with the connection. Before, the worker went on sending the
  // deliveries it had queued behind the endpoint's cap (up to twice the cap) after the pause.
  const path = '/gap/slow';
  const hook = await stack.trutoWebhook(path, { event_types: ['gap:slow'] });
  const received = () => new Set(stack.receiver.deliveries().filter((d) => d.path === path).map((d) => d.webhook_id));
  stack.receiver.setBehaviour(path, { latency_ms: 700 });
  const events = Array.from({ length: 100 }, (_, i) => ({ type: 'gap:slow', data: { i } }));
  expect((await stack.call('POST', '/v1/events/batch', { events })).status).toBe(202);
  // Claimed (sending, or queued behind the cap): the receiver records a delivery only as it answers.
  const claimed = async () =>
    Number((await stack.database.db.selectFrom('deliveries').select((e) => e.fn.countAll<string>().as('n')).where('webhook_id', '=', hook.id).where('status', '=', 'delivering').executeTakeFirstOrThrow()).n);
  await eventually(async () => (await claimed()) >= 90, 10_000, 'the batch claimed');
  const listening = proxy.connections(LISTEN);
  proxy.cut(LISTEN);
  expect((await stack.call('PATCH', `/webhook/${hook.id}`, { is_active: false })).status).toBe(200);
  proxy.restore(LISTEN);
  await eventually(() => proxy.connections(LISTEN) > listening, 10_000, 'a new LISTEN connection');
  await new Promise((r) => setTimeout(r, 2_500)); // the sends in flight end (700 ms each)
  const sent = received().size;
  // 32 at a time (the endpoint's cap; 700 ms is slow, so it does not grow): the first wave, and
  // the second, which began before the connection was back; without the re-check, all 96 queued.
  expect(sent).toBeLessThan(90);
  const held = await stack.call('GET', `/v1/webhooks/${hook.id}/deliveries?status=held&limit=100`);
  expect(held.body.result.length).toBe(100 - sent);
  // Activated again, the rest goes out, each once.
  stack.receiver.setBehaviour(path, undefined);
  expect((await stack.call('PATCH', `/webhook/${hook.id}`, { is_active: true })).status).toBe(200);
  await eventually(() => received().size === 100, 15_000, 'the rest, after the activation');
}, 60_000);
