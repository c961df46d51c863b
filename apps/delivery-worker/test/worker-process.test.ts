/** The worker as a real process: connects, idles on LISTEN, wakes on NOTIFY, stops cleanly on SIGTERM. */
import { once } from 'node:events';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createTestDatabase, spawnLogged, type TestDatabase } from '@hookpost/testkit';
import { sql } from 'kysely';
import { afterAll, beforeAll, expect, it } from 'vitest';

const entry = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../dist/main.js');
let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => database.drop());

function startWorker() {
  return spawnLogged(entry, { DATABASE_URL: database.url, LOG_LEVEL: 'trace' });
}

it('waits on LISTEN, wakes on NOTIFY, and exits 0 on SIGTERM', async () => {
  const w = startWorker();
  await w.waitFor('worker ready');
  await sql`select pg_notify('hookpost_deliveries', 'test-payload')`.execute(database.db);
  const wake = await w.waitFor('wake-up');
  expect(wake).toMatchObject({ channel: 'hookpost_deliveries', payload: 'test-payload' });

  const [exit] = await Promise.all([once(w.child, 'exit'), Promise.resolve(w.child.kill('SIGTERM'))]);
  expect(exit[0]).toBe(0);
  expect(w.lines.map((l) => l.msg)).toContain('stopped');

  // Its LISTEN connection is gone: nothing of the worker remains on the server.
  // (A backend may take a moment to go after its client closed.)
  let left = 1;
  for (let i = 0; i < 100 && left > 0; i++) {
    const r = await sql<{ n: number }>`select count(*)::int as n from pg_stat_activity where application_name like 'hookpost-worker%' and datname = current_database()`.execute(database.db);
    left = r.rows[0]?.n ?? 0;
    if (left > 0) await new Promise((res) => setTimeout(res, 50));
  }
  expect(left).toBe(0);
});

it('also stops on SIGINT', async () => {
  const w = startWorker();
  await w.waitFor('worker ready');
  w.child.kill('SIGINT');
  const [code] = await once(w.child, 'exit');
  expect(code).toBe(0);
});
