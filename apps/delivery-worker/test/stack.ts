/**
 * A running Hookpost for tests: the API and worker(s) as real processes over this
 * file's own database, and an in-process mock receiver. Retry delays, timeouts and
 * leases are compressed so the whole retry/health story plays out in seconds.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { apiKeys, workspaces, type Db } from '@hookpost/db';
import { sql } from 'kysely';
import { startReceiver, type Receiver } from '@hookpost/mock-receiver';
import { createTestDatabase, type TestDatabase } from '@hookpost/testkit';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

/** Compressed timings: retries after 100/200/300 ms (4 attempts), 1 s timeout, 5 s lease. */
export const FAST_ENV: Record<string, string> = {
  RETRY_SCHEDULE: '1,2,3',
  RETRY_TIME_SCALE: '0.1',
  RETRY_JITTER: '0',
  RETRY_AFTER_MAX_SECONDS: '5',
  DELIVERY_TIMEOUT_MS: '1000',
  DELIVERY_CONNECT_TIMEOUT_MS: '2000',
  DELIVERY_LEASE_MS: '5000',
  HEALTH_FAILURE_THRESHOLD: '3',
  HEALTH_PAUSE_AFTER_SECONDS: '3600',
  LOG_LEVEL: 'info',
};

export interface Proc {
  child: ChildProcess;
  output(): string;
  kill(signal?: NodeJS.Signals): Promise<number | null>;
}

function spawnApp(entry: string, env: Record<string, string>, readyText: string): Promise<Proc> {
  const child = spawn(process.execPath, [path.join(repoRoot, entry)], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (out += c.toString()));
  const proc: Proc = {
    child,
    output: () => out,
    async kill(signal = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      const exited = once(child, 'exit');
      child.kill(signal);
      const [code] = (await exited) as [number | null];
      return code;
    },
  };
  return new Promise((resolve, reject) => {
    const deadline = setTimeout(() => reject(new Error(`${entry} not ready:\n${out}`)), 20_000);
    const check = () => {
      if (out.includes(readyText)) {
        clearTimeout(deadline);
        child.stdout?.off('data', check);
        resolve(proc);
      }
    };
    child.stdout?.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(deadline);
      reject(new Error(`${entry} exited (${code}) before ready:\n${out}`));
    });
  });
}

export interface Stack {
  apiUrl: string;
  key: string;
  database: TestDatabase;
  receiver: Receiver;
  env: Record<string, string>;
  workers: Proc[];
  call: (method: string, p: string, body?: unknown, headers?: Record<string, string>) => Promise<{ status: number; body: any }>; // eslint-disable-line @typescript-eslint/no-explicit-any
  startWorker(extraEnv?: Record<string, string>): Promise<Proc>;
  /** A Truto-face webhook to `receiver/<path>`, its secret taught to the receiver. */
  trutoWebhook(path: string, extra?: Record<string, unknown>): Promise<{ id: string; secret: string }>;
  close(): Promise<void>;
}

export interface StackOptions {
  env?: Record<string, string>;
  apiEnv?: Record<string, string>;
  /** Rewrites the test database's URL for the API (to reach it through a proxy, say). */
  apiDatabaseUrl?: (url: string) => string;
  workers?: number;
}

export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const database = await createTestDatabase();
  const receiver = await startReceiver('127.0.0.1', 0);
  const env: Record<string, string> = {
    DATABASE_URL: database.url,
    HOOKPOST_ENCRYPTION_KEY: randomBytes(32).toString('base64'),
    HOOKPOST_SSRF_ALLOWLIST: '127.0.0.0/8',
    ...FAST_ENV,
    ...options.env,
  };
  const { workspace } = await workspaces.createWorkspace(database.db, 'stack');
  const { key } = await apiKeys.createApiKey(database.db, { workspaceId: workspace.id, name: 'stack' });
  // Port 0: the API picks a free port and logs it (no race with other files picking ports).
  const apiDatabaseUrl = options.apiDatabaseUrl?.(database.url) ?? database.url;
  const api = await spawnApp('apps/api/dist/main.js', { ...env, ...options.apiEnv, DATABASE_URL: apiDatabaseUrl, API_PORT: '0' }, 'api listening');
  const listening = /"url":"(http:\/\/127\.0\.0\.1:\d+)"/.exec(api.output());
  if (!listening?.[1]) throw new Error(`api did not log its URL:\n${api.output()}`);
  const apiUrl = listening[1];
  const workers: Proc[] = [];

  const call: Stack['call'] = async (method, p, body, headers = {}) => {
    const res = await fetch(apiUrl + p, {
      method,
      headers: { authorization: `Bearer ${key}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  };

  const stack: Stack = {
    apiUrl,
    key,
    database,
    receiver,
    env,
    workers,
    call,
    async startWorker(extraEnv = {}) {
      const w = await spawnApp('apps/delivery-worker/dist/main.js', { ...env, ...extraEnv }, 'worker ready');
      workers.push(w);
      return w;
    },
    async trutoWebhook(p, extra = {}) {
      const res = await call('POST', '/webhook', { target_url: `${receiver.url}${p}`, ...extra });
      if (res.status !== 201) throw new Error(`webhook create failed: ${res.status} ${JSON.stringify(res.body)}`);
      receiver.addSecret(res.body.secret);
      return { id: res.body.id, secret: res.body.secret };
    },
    async close() {
      await Promise.all(workers.map((w) => w.kill('SIGKILL')));
      await api.kill('SIGKILL');
      await receiver.close();
      await database.drop();
    },
  };
  for (let i = 0; i < (options.workers ?? 1); i++) await stack.startWorker();
  return stack;
}

/**
 * Of these deliveries (each received more than once), those sent again for a reason other than
 * an attempt that timed out. A send that outlives DELIVERY_TIMEOUT_MS (1 s here; a starved test
 * machine answers late) is retried by design, with the same webhook-id; any other second send is
 * what the tests look for.
 */
export async function resentWithoutTimeout(stack: Stack, deliveryIds: readonly string[]): Promise<string[]> {
  if (deliveryIds.length === 0) return [];
  const timedOut = await stack.database.db
    .selectFrom('delivery_attempts')
    .select('delivery_id')
    .where('delivery_id', 'in', deliveryIds)
    .where('outcome', '=', 'timeout')
    .execute();
  const explained = new Set(timedOut.map((r) => r.delivery_id));
  return deliveryIds.filter((id) => !explained.has(id));
}

/** The ids received more than once. */
export function receivedTwice(ids: readonly string[]): string[] {
  const seen = new Set<string>();
  const twice = new Set<string>();
  for (const id of ids) (seen.has(id) ? twice : seen).add(id);
  return [...twice];
}

/** Polls `check` until it returns a truthy value, or fails after `timeoutMs`. */
export async function eventually<T>(check: () => T | Promise<T>, timeoutMs = 15_000, what = 'condition'): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * How many statements the backends of these applications (the worker's `hookpost-worker`,
 * the poller's `hookpost-poller`) started on this file's database during `ms`: pg_stat_activity
 * sampled every few ms, a statement counted when a backend's `query_start` changes. Unlike
 * pg_stat_database's counters (every backend flushes them up to a second late, so a window
 * also holds earlier work of the API and the test), this counts only those processes, now.
 * Statements closer together than a sample count once: a loop of claims shows as a new
 * statement at (nearly) every sample, an idle process as a handful.
 */
export async function statementsStarted(db: Db, applications: readonly string[], ms: number): Promise<{ started: number; samples: number }> {
  const seen = new Map<number, string>();
  let started = 0;
  let samples = 0;
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const rows = (await sql<{ pid: number; at: string | null }>`
      select pid, query_start::text as at from pg_stat_activity
      where datname = current_database() and application_name = any(${applications as string[]})
    `.execute(db)).rows;
    for (const r of rows) {
      if (r.at === null) continue;
      const before = seen.get(r.pid);
      if (before !== undefined && before !== r.at) started++;
      seen.set(r.pid, r.at);
    }
    samples++;
    await new Promise((r) => setTimeout(r, 5));
  }
  return { started, samples };
}
