/**
 * `pnpm start`'s process, as a user meets it: no DATABASE_URL, so embedded Postgres;
 * healthy within a minute; the demo virtual webhook delivers to the mock receiver;
 * Ctrl-C stops everything; a second start keeps the data (and does not repeat the demo).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '@hookpost/db';
import { afterAll, expect, it } from 'vitest';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const dataDir = mkdtempSync(path.join(tmpdir(), 'hookpost-launcher-'));
const API_KEY = 'hp_test_launcher_key_0123456789abcdef';
let running: ChildProcess | undefined;

afterAll(() => {
  running?.kill('SIGKILL');
  rmSync(dataDir, { recursive: true, force: true });
});

async function start(apiPort: number, receiverPort: number, providerPort: number) {
  const env = {
    ...process.env,
    HOOKPOST_DATA_DIR: dataDir,
    API_PORT: String(apiPort),
    RECEIVER_PORT: String(receiverPort),
    MOCK_PROVIDER_PORT: String(providerPort),
    HOOKPOST_API_KEY: API_KEY,
  };
  delete env.DATABASE_URL;
  delete env.TEST_DATABASE_URL;
  const began = Date.now();
  const child = spawn(process.execPath, [path.join(repoRoot, 'apps/launcher/dist/main.js')], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  running = child;
  let out = '';
  child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (out += c.toString()));
  while (!out.includes('Hookpost is running.')) {
    if (child.exitCode !== null) throw new Error(`launcher exited early:\n${out}`);
    if (Date.now() - began > 60_000) throw new Error(`not ready within 60 s:\n${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { child, elapsedMs: Date.now() - began, output: () => out };
}

async function stop(child: ChildProcess) {
  child.kill('SIGINT');
  const [code] = (await once(child, 'exit')) as [number | null];
  running = undefined;
  return code;
}

const api = (port: number) => async (method: string, p: string, body?: unknown) => {
  const res = await fetch(`http://127.0.0.1:${port}${p}`, {
    method,
    headers: { authorization: API_KEY, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: res.status, body: (await res.json().catch(() => undefined)) as Record<string, unknown> };
};

it('starts with embedded Postgres, serves, stops on Ctrl-C, and keeps webhooks across a restart', { timeout: 180_000 }, async () => {
  const [apiPort, receiverPort, providerPort] = [await freePort(), await freePort(), await freePort()];
  const first = await start(apiPort, receiverPort, providerPort);
  expect(first.elapsedMs).toBeLessThan(60_000);
  expect(first.output()).toContain(API_KEY);
  expect(first.output()).toContain('embedded PostgreSQL');

  const call = api(apiPort);
  expect((await fetch(`http://127.0.0.1:${apiPort}/healthz`)).status).toBe(200);
  expect((await fetch(`http://127.0.0.1:${receiverPort}/deliveries`)).status).toBe(200);

  // The demo: a virtual webhook on the mock provider; its initial sync arrives in seconds, verified.
  type Received = { body: { type: string; data: unknown[] }; verified: boolean };
  const demo = async () => ((await (await fetch(`http://127.0.0.1:${receiverPort}/deliveries?path=/demo/virtual`)).json()) as { deliveries: Received[] }).deliveries;
  const deadline = Date.now() + 30_000;
  let got: Received[] = [];
  while (Date.now() < deadline && !got.some((d) => d.body.type === 'INITIAL-COMPLETE')) {
    got = await demo();
    await new Promise((r) => setTimeout(r, 200));
  }
  expect(got.map((d) => d.body.type)).toContain('INITIAL-COMPLETE');
  expect(got.every((d) => d.verified)).toBe(true);
  // The 25 seeded contacts (the provider's generator may add or move one during the listing).
  expect(new Set(got.flatMap((d) => (d.body.data as { id: string }[]).map((r) => r.id))).size).toBeGreaterThanOrEqual(25);
  const connection = await call('POST', '/unified/connection', { integration_type: 'hubspot', categories: ['crm'], permissions: [] });
  expect(connection.status).toBe(200);
  const hook = await call('POST', '/unified/webhook', {
    connection_id: connection.body.id,
    object_type: 'crm_contact',
    event: 'created',
    hook_url: `http://127.0.0.1:${receiverPort}/hooks/contacts`,
  });
  expect(hook.status).toBe(200);

  expect(await stop(first.child)).toBe(0);
  // Everything it started is gone: the ports are free again.
  await expect(fetch(`http://127.0.0.1:${apiPort}/healthz`)).rejects.toThrow();
  await expect(fetch(`http://127.0.0.1:${receiverPort}/healthz`)).rejects.toThrow();
  await expect(fetch(`http://127.0.0.1:${providerPort}/healthz`)).rejects.toThrow();

  const second = await start(apiPort, receiverPort, providerPort);
  const demoHooks = await call('GET', `/unified/webhook?limit=100`);
  expect((demoHooks.body as unknown as { hook_url?: string }[]).filter((h) => h.hook_url?.endsWith('/demo/virtual')).length).toBe(1);
  const again = await call('GET', `/unified/webhook/${hook.body.id}`);
  expect(again.status).toBe(200);
  expect(again.body).toMatchObject({ id: hook.body.id, connection_id: connection.body.id, object_type: 'crm_contact' });
  expect(await stop(second.child)).toBe(0);
});
