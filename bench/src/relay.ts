/**
 * The relay ceiling for (b), in its own process: what one event per request costs in
 * HTTP alone on this machine. It answers each `POST /v1/events` at once (202 and a
 * small JSON body, as Hookpost does) and forwards the event, enveloped and signed
 * (Standard Webhooks and X-Truto-Signature, as Hookpost's Truto face), to the receiver
 * over a keep-alive undici Pool. No database, no queue, nothing kept: an upper bound
 * for any design that takes events over HTTP and delivers them over HTTP in Node, not a
 * system that could be run.
 */
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { signStandardHeaders, trutoSignature } from '@hookpost/contract/signing';
import { listenHttp } from '@hookpost/runtime';
import { Pool } from 'undici';
import { envelope, envInt } from './common.js';

const receiverUrl = process.env.RECEIVER_URL as string;
const secret = process.env.RELAY_SECRET as string;
const webhookId = process.env.RELAY_WEBHOOK_ID as string;
const pool = new Pool(receiverUrl, { connections: envInt('RELAY_CONNECTIONS', 128, 1, 1024), pipelining: 1, keepAliveTimeout: 30_000 });
let failures = 0;

async function forward(eventId: string, data: Record<string, unknown>, createdAt: string): Promise<void> {
  const body = envelope(eventId, webhookId, data, createdAt);
  const headers = {
    'content-type': 'application/json',
    ...signStandardHeaders([secret], `msg_${eventId}`, Math.floor(Date.now() / 1000), body),
    'x-truto-signature': trutoSignature(secret, body),
  };
  const res = await pool.request({ path: '/h', method: 'POST', headers, body });
  await res.body.dump();
  if (res.statusCode < 200 || res.statusCode >= 300) throw new Error(`receiver answered ${res.statusCode}`);
}

const server = createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    let event: { data?: Record<string, unknown> };
    try {
      event = JSON.parse(Buffer.concat(chunks).toString('utf8')) as typeof event;
    } catch {
      res.writeHead(400).end();
      return;
    }
    const id = randomUUID();
    const createdAt = new Date().toISOString();
    res.writeHead(202, { 'content-type': 'application/json' }).end(JSON.stringify({ id, duplicate: false, deliveries: 1 }));
    forward(id, event.data ?? {}, createdAt).catch((err: unknown) => {
      if (++failures <= 5) process.stderr.write(`relay: ${String((err as Error)?.message ?? err)}\n`);
    });
  });
});

// As the product's servers listen (the same accept queue: a worker opens up to 512 connections at once).
void listenHttp(server, '127.0.0.1', 0).then(() => {
  process.send?.({ type: 'ready', port: (server.address() as AddressInfo).port });
});
const stop = () => {
  server.close();
  void pool.close().finally(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('disconnect', stop);
