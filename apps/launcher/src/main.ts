/**
 * `pnpm start`: the whole system on one machine. Embedded PostgreSQL unless
 * DATABASE_URL is set, migrations, a default workspace and API key, then the api,
 * the delivery worker, the mock receiver and the mock provider as child processes,
 * and a demo virtual webhook (see demo.ts). Ctrl-C stops all.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  apiKeys,
  createDatabase,
  createDb,
  databaseExists,
  migrateToLatest,
  startEmbeddedPostgres,
  withDatabase,
  workspaces,
  type RunningPostgres,
} from '@hookpost/db';
import { createLogger, loadConfig, SERVICE_NODE_FLAGS } from '@hookpost/runtime';
import { ensureDemo } from './demo.js';
import { formatLogLine } from './log-lines.js';
import { newEncryptionKey, persistentValue } from './local-state.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const config = loadConfig();
const logger = createLogger('launcher', config.logLevel);
const dataDir = path.resolve(repoRoot, config.dataDir);
const say = (line: string) => process.stdout.write(line + '\n');

let postgres: RunningPostgres | undefined;
const children = new Map<string, ChildProcess>();
let stopping = false;

async function databaseUrl(): Promise<string> {
  if (config.databaseUrl) return config.databaseUrl;
  say(`Starting embedded PostgreSQL (data in ${path.relative(process.cwd(), path.join(dataDir, 'postgres')) || '.'}) …`);
  postgres = await startEmbeddedPostgres({
    dataDir: path.join(dataDir, 'postgres'),
    onLog: (l) => logger.debug({ postgres: l }, 'postgres'),
    onNotice: (l) => say(`  note: ${l}`),
  });
  if (!(await databaseExists(postgres.url, 'hookpost'))) await createDatabase(postgres.url, 'hookpost');
  return withDatabase(postgres.url, 'hookpost');
}

function startChild(name: string, entry: string, env: NodeJS.ProcessEnv, nodeFlags: readonly string[] = []): ChildProcess {
  const child = spawn(process.execPath, [...nodeFlags, path.join(repoRoot, entry)], {
    env: { ...process.env, ...env, HOOKPOST_SUPERVISOR_PID: String(process.pid) },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true, // own process group: Ctrl-C reaches the launcher, which stops children in order
  });
  for (const stream of [child.stdout, child.stderr]) {
    if (stream) createInterface({ input: stream }).on('line', (l) => say(formatLogLine(name, l)));
  }
  child.on('exit', (code, signal) => {
    children.delete(name);
    if (!stopping) {
      say(`${name} exited unexpectedly (code ${code ?? '-'}, signal ${signal ?? '-'}); stopping everything`);
      void shutdown(1);
    }
  });
  children.set(name, child);
  return child;
}

async function waitForHealthy(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      /* not yet */
    }
    if (stopping) throw new Error('stopped');
    await new Promise((r) => setTimeout(r, 150));
  }
  throw new Error(`${url} did not become healthy in ${timeoutMs} ms`);
}

async function shutdown(code: number): Promise<never> {
  if (stopping) return new Promise<never>(() => undefined);
  stopping = true;
  say('Stopping …');
  await Promise.all(
    [...children.values()].map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          const kill = setTimeout(() => child.kill('SIGKILL'), 15_000);
          child.once('exit', () => {
            clearTimeout(kill);
            resolve();
          });
          child.kill('SIGTERM');
        }),
    ),
  );
  if (postgres) await postgres.stop().catch(() => undefined);
  say('Stopped.');
  process.exit(code);
}

process.on('SIGINT', () => void shutdown(0));
process.on('SIGTERM', () => void shutdown(0));

try {
  const url = await databaseUrl();
  const db = createDb({ connectionString: url, poolMax: 2, applicationName: 'hookpost-launcher' });
  await migrateToLatest(db);
  const { workspace } = await workspaces.ensureDefaultWorkspace(db);
  let apiKey: string;
  if (config.bootstrapApiKey) {
    apiKey = config.bootstrapApiKey;
    await apiKeys.ensureApiKey(db, workspace.id, apiKey, 'HOOKPOST_API_KEY');
  } else {
    // A local key kept in the data folder, so the same key works after a restart.
    apiKey = await persistentValue(dataDir, 'api-key', apiKeys.generateApiKey);
    await apiKeys.ensureApiKey(db, workspace.id, apiKey, 'Local key');
  }
  await db.destroy();

  const encryptionKey = process.env.HOOKPOST_ENCRYPTION_KEY || (await persistentValue(dataDir, 'encryption-key', newEncryptionKey));
  const env: NodeJS.ProcessEnv = {
    DATABASE_URL: url,
    HOOKPOST_ENCRYPTION_KEY: encryptionKey,
    // Local development delivers to the mock receiver on loopback; nothing else private.
    HOOKPOST_SSRF_ALLOWLIST: process.env.HOOKPOST_SSRF_ALLOWLIST ?? '127.0.0.0/8,::1/128',
    // libuv's thread pool (DNS lookups, file I/O): 4 threads by default; name resolution is
    // shared per name (address-policy.ts), and more threads keep a few tenants' dead DNS from
    // delaying everyone's new connections.
    UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? '16',
    API_PORT: String(config.api.port),
    RECEIVER_PORT: String(config.receiver.port),
    MOCK_PROVIDER_PORT: String(config.mockProvider.port),
    // The demo source changes records every minute (across its four object types), so the
    // demo webhook (crm_contact updates) has something to deliver at most polls.
    MOCK_PROVIDER_CREATES_PER_MIN: process.env.MOCK_PROVIDER_CREATES_PER_MIN ?? '4',
    MOCK_PROVIDER_UPDATES_PER_MIN: process.env.MOCK_PROVIDER_UPDATES_PER_MIN ?? '8',
    MOCK_PROVIDER_DELETES_PER_MIN: process.env.MOCK_PROVIDER_DELETES_PER_MIN ?? '1',
  };
  const apiUrl = `http://${config.api.host}:${config.api.port}`;
  const receiverUrl = `http://${config.receiver.host}:${config.receiver.port}`;
  const providerUrl = `http://${config.mockProvider.host}:${config.mockProvider.port}`;
  startChild('api', 'apps/api/dist/main.js', env, SERVICE_NODE_FLAGS);
  startChild('worker', 'apps/delivery-worker/dist/main.js', env, SERVICE_NODE_FLAGS);
  startChild('receiver', 'apps/mock-receiver/dist/main.js', env);
  startChild('provider', 'apps/mock-provider/dist/main.js', env);
  await Promise.all([
    waitForHealthy(`${apiUrl}/healthz`, 60_000),
    waitForHealthy(`${receiverUrl}/healthz`, 60_000),
    waitForHealthy(`${providerUrl}/healthz`, 60_000),
  ]);
  const demo = await ensureDemo({ apiUrl, apiKey, receiverUrl, providerUrl });

  say('');
  say('Hookpost is running.');
  say(`  API            ${apiUrl}        (docs: ${apiUrl}/docs, OpenAPI: ${apiUrl}/openapi.json)`);
  say(`  Mock receiver  ${receiverUrl}        (deliveries: ${receiverUrl}/deliveries)`);
  say(`  Mock provider  ${providerUrl}        (a demo source: ${providerUrl}/_control/accounts/demo/objects/crm_contact/records)`);
  say(`  Database       ${config.databaseUrl ? 'DATABASE_URL' : `embedded PostgreSQL on 127.0.0.1:${postgres?.port}`}`);
  say(`  API key        ${apiKey}`);
  say('');
  say(`  Demo           virtual webhook ${demo.webhookId} polls the mock provider's crm_contact every minute;`);
  say(`                 its deliveries arrive at ${receiverUrl}/deliveries?path=${encodeURIComponent(demo.path)}`);
  say(`  Try: curl -H "Authorization: Bearer ${apiKey}" ${apiUrl}/unified/webhook/${demo.webhookId}`);
  say('Press Ctrl-C to stop.');
} catch (err) {
  say(`Could not start Hookpost: ${err instanceof Error ? err.message : String(err)}`);
  await shutdown(1);
}
