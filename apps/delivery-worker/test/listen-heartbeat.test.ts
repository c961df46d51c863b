/**
 * A LISTEN connection that goes silent (a NAT or load balancer forgetting an idle flow,
 * a host gone without a FIN) raises no error. The worker asks it `select 1` every
 * DELIVERY_LISTEN_HEARTBEAT_MS and replaces it when no answer comes, so NOTIFY wakes it
 * again within moments, not at its 30 s idle re-check. The worker reaches Postgres here
 * through a TCP proxy that can freeze the listener's connection: its bytes stop in both
 * directions and its sockets stay open.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { eventually, startStack, type Proc, type Stack } from './stack.js';

/** Forwards TCP to `target`; `freezeListeners()` silences the connections that opened as the worker's LISTEN session. */
async function startFreezingProxy(target: { host: string; port: number }) {
  const listeners: { client: Socket; server: Socket; frozen: boolean }[] = [];
  const all = new Set<Socket>();
  const proxy: Server = createServer((client) => {
    const server = connect(target.port, target.host);
    all.add(client).add(server);
    const link = { client, server, frozen: false };
    let first = true;
    client.on('data', (chunk) => {
      // The startup message carries application_name in the clear (no TLS on loopback).
      if (first && chunk.includes('hookpost-worker-listen')) listeners.push(link);
      first = false;
      if (!link.frozen) server.write(chunk);
    });
    server.on('data', (chunk) => {
      if (!link.frozen) client.write(chunk);
    });
    const close = () => {
      client.destroy();
      server.destroy();
    };
    client.on('close', close).on('error', close);
    server.on('close', close).on('error', close);
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  return {
    port: (proxy.address() as AddressInfo).port,
    listenerConnections: () => listeners.length,
    freezeListeners: () => {
      for (const l of listeners) l.frozen = true;
    },
    close: async () => {
      for (const s of all) s.destroy();
      await new Promise<void>((r) => proxy.close(() => r()));
    },
  };
}

let stack: Stack;
let proxy: Awaited<ReturnType<typeof startFreezingProxy>>;
let worker: Proc;

beforeAll(async () => {
  stack = await startStack({ workers: 0 });
  const url = new URL(stack.database.url);
  proxy = await startFreezingProxy({ host: url.hostname, port: Number(url.port || 5432) });
  url.hostname = '127.0.0.1';
  url.port = String(proxy.port);
  worker = await stack.startWorker({ DATABASE_URL: url.toString(), DELIVERY_LISTEN_HEARTBEAT_MS: '500' });
});

afterAll(async () => {
  await stack?.close();
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
  expect(proxy.listenerConnections()).toBe(1);
  await publishOne('before');
  await eventually(() => arrived('before'), 5_000, 'the first event');

  proxy.freezeListeners();
  await eventually(() => worker.output().includes('listen connection unresponsive; reconnecting'), 5_000, 'the worker giving up on the silent connection');
  await eventually(() => proxy.listenerConnections() === 2, 5_000, 'a new LISTEN connection');
  // The worker re-checks the queue on reconnecting; give that re-check time to end, so
  // what delivers the next event is a NOTIFY.
  await new Promise((r) => setTimeout(r, 500));

  const sentAt = await publishOne('after');
  await eventually(() => arrived('after'), 5_000, 'the event published after the freeze');
  expect(Date.now() - sentAt).toBeLessThan(5_000); // the idle re-check is 30 s away
}, 30_000);
