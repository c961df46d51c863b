import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createDatabase, createDb, dropDatabase, migrateToLatest, startEmbeddedPostgres, withDatabase } from '@hookpost/db';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Maintenance URL of the test server (an external one, or the embedded one). */
    hookpostServerUrl: string;
    /** A migrated database to clone per test file. */
    hookpostTemplate: string;
  }
}

/**
 * Once per test run: find a Postgres (TEST_DATABASE_URL, DATABASE_URL, else a fresh
 * embedded one in a temp folder), migrate a template database, and hand both to the
 * test files. Each file clones the template, so files never share rows.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const external = process.env.TEST_DATABASE_URL || process.env.DATABASE_URL;
  let serverUrl: string;
  let stopEmbedded: (() => Promise<void>) | undefined;
  let tempDir: string | undefined;
  if (external) {
    serverUrl = external;
  } else {
    tempDir = await mkdtemp(path.join(tmpdir(), 'hookpost-test-pg-'));
    const pg = await startEmbeddedPostgres({ dataDir: path.join(tempDir, 'data'), ephemeral: true });
    serverUrl = pg.url;
    stopEmbedded = pg.stop;
  }
  const template = `hookpost_tpl_${randomBytes(5).toString('hex')}`;
  await createDatabase(serverUrl, template);
  const db = createDb({ connectionString: withDatabase(serverUrl, template), poolMax: 1 });
  try {
    await migrateToLatest(db);
  } finally {
    await db.destroy();
  }
  project.provide('hookpostServerUrl', serverUrl);
  project.provide('hookpostTemplate', template);
  process.stdout.write(`test database server: ${external ? 'DATABASE_URL' : 'embedded PostgreSQL'}\n`);

  return async () => {
    await dropDatabase(serverUrl, template).catch(() => undefined);
    if (stopEmbedded) await stopEmbedded();
    if (tempDir) await rm(tempDir, { recursive: true, force: true });
  };
}
