/**
 * `pnpm start`'s process, as a user meets it: no DATABASE_URL, so embedded Postgres;
 * healthy within a minute; Ctrl-C stops everything; a second start keeps the data.
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

async function start(apiPort: number, receiverPort: number) {
  const env = { ...process.env, HOOKPOST_DATA_DIR: dataDir, API_PORT: String(apiPort), RECEIVER_PORT: String(receiverPort), HOOKPOST_API_KEY: API_KEY };
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
  const [apiPort, receiverPort] = [await freePort(), await freePort()];
  const first = await start(apiPort, receiverPort);
  expect(first.elapsedMs).toBeLessThan(60_000);
  expect(first.output()).toContain(API_KEY);
  expect(first.output()).toContain('embedded PostgreSQL');

  const call = api(apiPort);
  expect((await fetch(`http://127.0.0.1:${apiPort}/healthz`)).status).toBe(200);
  expect((await fetch(`http://127.0.0.1:${receiverPort}/deliveries`)).status).toBe(200);
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

  const second = await start(apiPort, receiverPort);
  const again = await call('GET', `/unified/webhook/${hook.body.id}`);
  expect(again.status).toBe(200);
  expect(again.body).toMatchObject({ id: hook.body.id, connection_id: connection.body.id, object_type: 'crm_contact' });
  expect(await stop(second.child)).toBe(0);
});
