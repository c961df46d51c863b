import { createHash, randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import type { Db } from '../client.js';
import type { ApiKeyRow } from '../schema.js';
import { inScope, type Scope } from './scope.js';

const KEY_PREFIX = 'hp_';

/** A new random API key: `hp_` + 32 random bytes, base64url. */
export function generateApiKey(): string {
  return KEY_PREFIX + randomBytes(32).toString('base64url');
}

/** Keys are stored as SHA-256: they are long random strings, so a slow hash adds nothing. */
export function hashApiKey(key: string): Buffer {
  return createHash('sha256').update(key, 'utf8').digest();
}

const displayPrefix = (key: string) => key.slice(0, KEY_PREFIX.length + 6);

export async function createApiKey(
  db: Db,
  input: { workspaceId: string; environmentId?: string | null; name: string; key?: string },
): Promise<{ row: ApiKeyRow; key: string }> {
  const key = input.key ?? generateApiKey();
  const row = await db
    .insertInto('api_keys')
    .values({
      workspace_id: input.workspaceId,
      environment_id: input.environmentId ?? null,
      name: input.name,
      prefix: displayPrefix(key),
      key_hash: hashApiKey(key),
    })
    .returningAll()
    .executeTakeFirstOrThrow();
  return { row, key };
}

/**
 * Makes `key` a valid key of `workspaceId` (idempotent). Used for HOOKPOST_API_KEY.
 * A key already registered to another workspace is moved: the operator said so.
 */
export async function ensureApiKey(db: Db, workspaceId: string, key: string, name: string): Promise<ApiKeyRow> {
  return db
    .insertInto('api_keys')
    .values({ workspace_id: workspaceId, environment_id: null, name, prefix: displayPrefix(key), key_hash: hashApiKey(key) })
    .onConflict((oc) => oc.column('key_hash').doUpdateSet({ workspace_id: workspaceId, environment_id: null }))
    .returningAll()
    .executeTakeFirstOrThrow();
}

export async function findApiKey(db: Db, key: string): Promise<ApiKeyRow | undefined> {
  return db.selectFrom('api_keys').selectAll().where('key_hash', '=', hashApiKey(key)).executeTakeFirst();
}

/** Records use at most once a minute per key, so auth does not write on every request. */
export async function touchApiKey(db: Db, id: string): Promise<void> {
  await db
    .updateTable('api_keys')
    .set({ last_used_at: sql<Date>`now()` })
    .where('id', '=', id)
    .where((eb) => eb.or([eb('last_used_at', 'is', null), eb('last_used_at', '<', sql<Date>`now() - interval '1 minute'`)]))
    .execute();
}

/**
 * The keys a key of `scope` may see and delete: an environment's key only its environment's
 * (not the workspace-wide ones, nor other environments': it listed and deleted them all).
 */
export async function listApiKeys(db: Db, scope: Scope): Promise<ApiKeyRow[]> {
  return db.selectFrom('api_keys').selectAll().where(inScope(scope)).orderBy('created_at').orderBy('id').execute();
}

export async function deleteApiKey(db: Db, scope: Scope, id: string): Promise<boolean> {
  const r = await db.deleteFrom('api_keys').where(inScope(scope)).where('id', '=', id).executeTakeFirst();
  return r.numDeletedRows > 0n;
}
