import { randomBytes } from 'node:crypto';
import { createDatabase, createDb, dropDatabase, type Database } from '@hookpost/db';
import type { Kysely } from 'kysely';
import { inject } from 'vitest';

export interface TestDatabase {
  name: string;
  url: string;
  db: Kysely<Database>;
  /** Closes the pool and drops the database. */
  drop(): Promise<void>;
}

/** A fresh, migrated database of this test file's own, cloned from the run's template. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const serverUrl = inject('hookpostServerUrl');
  const template = inject('hookpostTemplate');
  const name = `hookpost_t_${randomBytes(6).toString('hex')}`;
  let url: string | undefined;
  for (let attempt = 0; !url; attempt++) {
    try {
      url = await createDatabase(serverUrl, name, template);
    } catch (err) {
      // Two files cloning the same template at the same instant can collide; retry.
      if (attempt >= 20 || !String(err).includes('being accessed by other users')) throw err;
      await new Promise((r) => setTimeout(r, 50 + Math.random() * 100));
    }
  }
  const db = createDb({ connectionString: url, poolMax: 10, applicationName: 'hookpost-test' });
  return {
    name,
    url,
    db,
    async drop() {
      await db.destroy();
      await dropDatabase(serverUrl, name);
    },
  };
}

export function serverUrl(): string {
  return inject('hookpostServerUrl');
}
