import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { apiKeys, createSecretBox, workspaces, type Database } from '@hookpost/db';
import { createLogger, loadConfig } from '@hookpost/runtime';
import { createTestDatabase, type TestDatabase } from '@hookpost/testkit';
import { sql, type Kysely } from 'kysely';
import { createApi } from '../src/app.js';
import { createServer } from 'node:http';

export const ADMIN_TOKEN = 'test-admin-token-0123456789';

export interface TestApi {
  url: string;
  db: Kysely<Database>;
  database: TestDatabase;
  /** Requests served by the fast ingest path so far. */
  fastIngestServed(): number;
  close(): Promise<void>;
}

/** The real API (the app behind its fast ingest path, as main.ts serves it) on a random loopback port, over this file's own database. */
export async function startTestApi(env: Record<string, string> = {}): Promise<TestApi> {
  const database = await createTestDatabase();
  const config = loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'silent', HOOKPOST_ADMIN_TOKEN: ADMIN_TOKEN, HOOKPOST_SSRF_ALLOWLIST: '127.0.0.0/8', ...env });
  const { handler, close } = createApi({
    db: database.db,
    config,
    logger: createLogger('api-test', 'silent'),
    secrets: createSecretBox(config.encryptionKey),
  });
  const server = createServer(handler).listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    db: database.db,
    database,
    fastIngestServed: () => handler.served(),
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await close();
      await database.drop();
    },
  };
}

export interface TestWorkspace {
  workspaceId: string;
  environmentId: string;
  key: string;
}

export async function newWorkspace(db: Kysely<Database>, name = 'Test workspace'): Promise<TestWorkspace> {
  const { workspace, environment } = await workspaces.createWorkspace(db, name);
  const { key } = await apiKeys.createApiKey(db, { workspaceId: workspace.id, name: 'test' });
  return { workspaceId: workspace.id, environmentId: environment.id, key };
}

/** A small JSON client: `call('POST', '/webhook', body)` → { status, body }. */
export function client(baseUrl: string, key?: string) {
  return async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const res = await fetch(baseUrl + path, {
      method,
      headers: {
        ...(key ? { authorization: `Bearer ${key}` } : {}),
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        ...headers,
      },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      /* keep text */
    }
    return { status: res.status, body: parsed as any, headers: res.headers }; // eslint-disable-line @typescript-eslint/no-explicit-any
  };
}

/** Every row of every table that requests may write: compared before/after a rejected request. */
export async function snapshot(db: Kysely<Database>): Promise<string> {
  const tables = ['workspaces', 'environments', 'api_keys', 'connections', 'webhooks', 'poll_streams', 'connection_polls'] as const;
  const out: Record<string, unknown> = {};
  for (const t of tables) {
    const rows = await sql<Record<string, unknown>>`select * from ${sql.table(t)} order by 1`.execute(db);
    out[t] = rows.rows.map(({ last_used_at: _ignored, ...r }) => r);
  }
  return JSON.stringify(out);
}

export async function createConnection(call: ReturnType<typeof client>, overrides: Record<string, unknown> = {}): Promise<string> {
  const res = await call('POST', '/unified/connection', {
    integration_type: 'hubspot',
    categories: ['crm'],
    permissions: ['crm_contact_read'],
    auth: { access_token: 'secret-token' },
    ...overrides,
  });
  if (res.status !== 200) throw new Error(`connection create failed: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.id as string;
}
