import { sql } from 'kysely';
import { inTransaction, type Db } from '../client.js';
import { markWebhooksDeleted } from './deliveries.js';
import type { ConnectionRow, ConnectionUpdate, NewConnection } from '../schema.js';
import { inScope, type Scope } from './scope.js';

export type ConnectionWithEnv = ConnectionRow & { environment_name: string };

function baseSelect(db: Db, scope: Scope) {
  return db
    .selectFrom('connections as c')
    .innerJoin('environments as e', 'e.id', 'c.environment_id')
    .selectAll('c')
    .select('e.name as environment_name')
    .where(inScope(scope, 'c'));
}

export async function insertConnection(db: Db, values: NewConnection): Promise<ConnectionRow> {
  return db.insertInto('connections').values(values).returningAll().executeTakeFirstOrThrow();
}

export async function getConnection(db: Db, scope: Scope, id: string): Promise<ConnectionWithEnv | undefined> {
  return baseSelect(db, scope).where('c.id', '=', id).executeTakeFirst();
}

export async function updateConnection(db: Db, scope: Scope, id: string, values: ConnectionUpdate): Promise<boolean> {
  const r = await db
    .updateTable('connections')
    .set({ ...values, updated_at: sql<Date>`now()` })
    .where(inScope(scope))
    .where('id', '=', id)
    .executeTakeFirst();
  return r.numUpdatedRows > 0n;
}

/**
 * Deletes the connection and its webhooks (ON DELETE CASCADE); their deliveries and attempt
 * log follow, deleted by the worker in batches (deliveries.markWebhooksDeleted). The webhooks
 * are locked first, in id order (as inserts of deliveries lock them).
 */
export async function deleteConnection(db: Db, scope: Scope, id: string): Promise<boolean> {
  return inTransaction(db, async (trx) => {
    const row = await trx.selectFrom('connections').select('id').where(inScope(scope)).where('id', '=', id).forUpdate().executeTakeFirst();
    if (!row) return false;
    const hooks = await trx.selectFrom('webhooks').select('id').where('connection_id', '=', row.id).orderBy('id').forUpdate().execute();
    await markWebhooksDeleted(
      trx,
      hooks.map((h) => h.id),
    );
    await trx.deleteFrom('connections').where('id', '=', row.id).execute();
    return true;
  });
}

export interface ConnectionListFilter {
  limit: number;
  offset: number;
  sort: 'name' | 'updated_at' | 'created_at';
  order: 'asc' | 'desc';
  updatedGte?: Date;
  categories?: string[];
  environmentName?: string;
  externalXref?: string;
}

const SORT_COLUMN = { name: 'c.integration_type', updated_at: 'c.updated_at', created_at: 'c.created_at' } as const;

export async function listConnections(db: Db, scope: Scope, f: ConnectionListFilter): Promise<ConnectionWithEnv[]> {
  return baseSelect(db, scope)
    .$if(f.updatedGte !== undefined, (q) => q.where('c.updated_at', '>=', f.updatedGte as Date))
    .$if(!!f.categories?.length, (q) => q.where(sql<boolean>`c.categories && ${f.categories ?? []}::text[]`))
    .$if(f.environmentName !== undefined, (q) => q.where('e.name', '=', f.environmentName as string))
    .$if(f.externalXref !== undefined, (q) => q.where('c.external_xref', '=', f.externalXref as string))
    .orderBy(SORT_COLUMN[f.sort], f.order)
    .orderBy('c.id', f.order)
    .limit(f.limit)
    .offset(f.offset)
    .execute();
}
