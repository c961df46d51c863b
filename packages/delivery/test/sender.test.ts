/**
 * The sender against a local HTTP server: status and snippet, the snippet cap on large
 * bodies, Retry-After, the total timeout (also while the body trickles), refused
 * connections and blocked addresses.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { createAddressPolicy } from '../src/address-policy.js';
import { Sender } from '../src/sender.js';
import { localServer } from './local-server.js';

const delivery = { body: '{"hello":"world"}', headers: { 'content-type': 'application/json' } };

const local = localServer((req, res) => {
  req.resume();
  const path = req.url ?? '/';
  if (path === '/ok') return res.writeHead(200, { 'content-type': 'text/plain' }).end('fine, thanks');
  if (path === '/empty') return res.writeHead(204).end();
  if (path === '/large') return res.writeHead(200).end('x'.repeat(512 * 1024));
  // 4095 ASCII bytes, then 'é' (2 bytes) across the 4 KB cap.
  if (path === '/cut-character') return res.writeHead(500).end(`${'a'.repeat(4095)}é and more`);
  if (path === '/limited') return res.writeHead(429, { 'retry-after': '7' }).end();
  if (path === '/silent') return; // never answers
  if (path === '/trickle') {
    res.writeHead(200);
    const timer = setInterval(() => res.write('.'), 50);
    res.on('close', () => clearInterval(timer));
    return;
  }
  res.writeHead(404).end();
});

const loopback = () => new Sender({ policy: createAddressPolicy(['127.0.0.0/8']), timeoutMs: 400, connectTimeoutMs: 400 });

describe('Sender', () => {
  it('returns the status and the start of the body', async () => {
    const sender = loopback();
    expect(await sender.send(`${local.url()}/ok`, delivery)).toMatchObject({ statusCode: 200, responseSnippet: 'fine, thanks' });
    const empty = await sender.send(`${local.url()}/empty`, delivery);
    expect(empty.statusCode).toBe(204);
    expect(empty.responseSnippet).toBeUndefined();
    await sender.close();
  });

  it('keeps 4 KB of a large body and does not read it all', async () => {
    const sender = loopback();
    const r = await sender.send(`${local.url()}/large`, delivery);
    expect(r.statusCode).toBe(200);
    expect(r.responseSnippet).toHaveLength(4096);
    // The connection was dropped, not reused: the next send still works.
    expect((await sender.send(`${local.url()}/ok`, delivery)).statusCode).toBe(200);
    await sender.close();
  });

  it('leaves out a character the 4 KB cap cuts in two', async () => {
    const sender = loopback();
    const r = await sender.send(`${local.url()}/cut-character`, delivery);
    expect(r.statusCode).toBe(500);
    expect(r.responseSnippet).toBe('a'.repeat(4095));
    await sender.close();
  });

  it('reads Retry-After on 429', async () => {
    const sender = loopback();
    expect(await sender.send(`${local.url()}/limited`, delivery)).toMatchObject({ statusCode: 429, retryAfterSeconds: 7 });
    await sender.close();
  });

  it('times out a silent endpoint and a trickling body within the total timeout', async () => {
    const sender = loopback();
    for (const path of ['/silent', '/trickle']) {
      const started = Date.now();
      const r = await sender.send(`${local.url()}${path}`, delivery);
      expect(r.failure?.class, path).toBe('timeout');
      expect(Date.now() - started, path).toBeLessThan(1500);
    }
    await sender.close();
  });

  it('classifies refused connections, blocked addresses and bad URLs', async () => {
    const sender = loopback();
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    expect((await sender.send(`http://127.0.0.1:${port}/x`, delivery)).failure?.class).toBe('connect_error');
    // To a name: the attempt log names it, not the address it resolved to (before:
    // "connect ECONNREFUSED 127.0.0.1:port", an internal address once a range is allowed).
    const named = (await sender.send(`http://localhost:${port}/x`, delivery)).failure;
    expect(named?.class).toBe('connect_error');
    expect(named?.message).toContain('localhost');
    expect(named?.message).not.toMatch(/127\.0\.0\.1|::1/);
    expect((await sender.send('ftp://example.com/x', delivery)).failure?.class).toBe('invalid_url');
    await sender.close();

    const strict = new Sender({ policy: createAddressPolicy([]), timeoutMs: 400 });
    expect((await strict.send(`${local.url()}/ok`, delivery)).failure?.class).toBe('blocked_address');
    expect((await strict.send('http://localhost:9/x', delivery)).failure?.class).toBe('blocked_address');
    await strict.close();
  });
});
