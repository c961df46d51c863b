import { sql, type UpdateObject } from 'kysely';
import { inTransaction, PREPARE, type Db } from '../client.js';
import { markWebhooksDeleted, notifyWebhooksChanged } from './deliveries.js';
import type { Database, NewWebhook, WebhookRow, WebhookUpdate } from '../schema.js';
import { inScope, type Scope } from './scope.js';

/** A webhook row with the name of its environment. */
export type WebhookWithEnv = WebhookRow & { environment_name: string };

function baseSelect(db: Db, scope: Scope) {
  return db
    .selectFrom('webhooks as w')
    .innerJoin('environments as e', 'e.id', 'w.environment_id')
    .selectAll('w')
    .select('e.name as environment_name')
    .where(inScope(scope, 'w'));
}

export async function insertWebhook(db: Db, values: NewWebhook): Promise<WebhookRow> {
  return db.insertInto('webhooks').values(values).returningAll().executeTakeFirstOrThrow();
}

export async function getWebhook(db: Db, scope: Scope, id: string): Promise<WebhookWithEnv | undefined> {
  return baseSelect(db, scope).where('w.id', '=', id).executeTakeFirst();
}

/** Sets `values` (plain values, or SQL expressions over the row) and tells the workers; false: no such webhook in scope. */
export async function updateWebhook(db: Db, scope: Scope, id: string, values: WebhookUpdate | UpdateObject<Database, 'webhooks'>): Promise<boolean> {
  const r = await db
    .updateTable('webhooks')
    .set({ ...values, updated_at: sql<Date>`now()` })
    .where(inScope(scope))
    .where('id', '=', id)
    .executeTakeFirst();
  if (r.numUpdatedRows === 0n) return false;
  // Deliveries workers queued with the old URL, secret or settings go back and are read anew.
  await notifyWebhooksChanged(db, [id]);
  return true;
}

/**
 * A new signing secret (sealed); the one it replaces keeps signing for `overlapSeconds` (0: not
 * at all). One statement, so the replaced secret is the one current when it runs: read first
 * and written after, two rotations at once both kept the first secret as the previous one, and
 * one of them answered with a secret that then signed nothing.
 */
export async function rotateWebhookSecret(db: Db, scope: Scope, id: string, sealedSecret: Buffer, overlapSeconds: number): Promise<boolean> {
  const keep = overlapSeconds > 0;
  return updateWebhook(db, scope, id, {
    secret_encrypted: sealedSecret,
    previous_secret_encrypted: keep ? sql<Buffer>`secret_encrypted` : null,
    previous_secret_expires_at: keep ? sql<Date>`now() + make_interval(secs => ${overlapSeconds})` : null,
  });
}

/**
 * Deletes the webhook; its deliveries and their attempt log follow, deleted by the worker in
 * batches (deliveries.markWebhooksDeleted). The row lock waits for inserts of deliveries in
 * flight (they hold it FOR KEY SHARE), so their rows go too.
 */
export async function deleteWebhook(db: Db, scope: Scope, id: string): Promise<boolean> {
  return inTransaction(db, async (trx) => {
    const row = await trx.selectFrom('webhooks').select('id').where(inScope(scope)).where('id', '=', id).forUpdate().executeTakeFirst();
    if (!row) return false;
    await markWebhooksDeleted(trx, [row.id]);
    await trx.deleteFrom('webhooks').where('id', '=', row.id).execute();
    return true;
  });
}

/** What a webhook's health is once it is resumed or unpaused: healthy, with no failure streak. */
export function freshHealth(): WebhookUpdate {
  return { is_healthy: true, consecutive_failures: 0, failing_since: null, disabled_reason: null, unhealthy_reason: null, checked_at: new Date() };
}

/** Clears unhealthy, paused and disabled, and the failure streak, as `resume` promises. */
export async function resumeWebhook(db: Db, scope: Scope, id: string): Promise<boolean> {
  return updateWebhook(db, scope, id, { ...freshHealth(), is_paused: false, is_active: true });
}

/**
 * Locks the webhook's row until the transaction ends: an update that reads the webhook to
 * decide what to write (is it stopped? a merged target?) must not race the worker's health
 * changes, which lock it too (webhook-health.ts). A no-key lock: deliveries being inserted for
 * the webhook (whose foreign key takes a key-share lock) do not wait for it. With FOR UPDATE,
 * a pause holding a 300,000-delivery backlog held every ingest group with an event for the
 * webhook (3.2 s, and other workspaces' requests behind them in the commit slots); deliveries
 * inserted meanwhile are held by the claim, which reads the webhook as it is then.
 */
export async function lockWebhook(db: Db, id: string): Promise<void> {
  await lockWebhooks(db, [id]);
}

/**
 * Locks webhooks as lockWebhook does, in id order: two workers changing the health of
 * overlapping webhooks in different orders would otherwise deadlock (webhook-health.ts).
 */
export async function lockWebhooks(db: Db, ids: readonly string[]): Promise<void> {
  if (ids.length === 0) return;
  await sql`select id from webhooks where id = any(${[...new Set(ids)]}::uuid[]) order by id for no key update`.execute(db);
}

export type UnifiedSort = 'name' | 'updated_at' | 'created_at';

export interface UnifiedListFilter {
  limit: number;
  offset: number;
  sort: UnifiedSort;
  order: 'asc' | 'desc';
  updatedGte?: Date;
  createdLte?: Date;
  objectType?: string;
  integrationType?: string;
  connectionId?: string;
  environmentName?: string;
  isHealthy?: boolean;
}

const SORT_COLUMN = { name: 'w.object_type', updated_at: 'w.updated_at', created_at: 'w.created_at' } as const;

/** Webhooks the unified.to face can show: those tied to a connection and an object type. */
export async function listUnifiedWebhooks(db: Db, scope: Scope, f: UnifiedListFilter): Promise<WebhookWithEnv[]> {
  return baseSelect(db, scope)
    .where('w.connection_id', 'is not', null)
    .where('w.object_type', 'is not', null)
    .$if(f.updatedGte !== undefined, (q) => q.where('w.updated_at', '>=', f.updatedGte as Date))
    .$if(f.createdLte !== undefined, (q) => q.where('w.created_at', '<=', f.createdLte as Date))
    .$if(f.objectType !== undefined, (q) => q.where('w.object_type', '=', f.objectType as string))
    .$if(f.integrationType !== undefined, (q) => q.where('w.integration_type', '=', f.integrationType as string))
    .$if(f.connectionId !== undefined, (q) => q.where('w.connection_id', '=', f.connectionId as string))
    .$if(f.environmentName !== undefined, (q) => q.where('e.name', '=', f.environmentName as string))
    .$if(f.isHealthy !== undefined, (q) => q.where('w.is_healthy', '=', f.isHealthy as boolean))
    .orderBy(SORT_COLUMN[f.sort], f.order)
    .orderBy('w.id', f.order)
    .limit(f.limit)
    .offset(f.offset)
    .execute();
}

export interface CursorListFilter {
  limit: number;
  /** Exclusive lower bound: (created_at, id) of the last row of the previous page. */
  after?: { createdAt: Date; id: string };
  isActive?: boolean;
  environmentId?: string;
}

/** Webhooks the Truto face can show (those with a target URL), oldest first, keyset-paged. */
export async function listWebhooksAfter(db: Db, scope: Scope, f: CursorListFilter): Promise<WebhookWithEnv[]> {
  return baseSelect(db, scope)
    .where('w.hook_url', 'is not', null)
    .$if(f.after !== undefined, (q) =>
      q.where(sql<boolean>`(w.created_at, w.id) > (${f.after?.createdAt ?? null}::timestamptz, ${f.after?.id ?? null}::uuid)`),
    )
    // The face's is_active is both switches (webhook-views.ts): a webhook paused by health or
    // through the unified face shows, and so filters, as inactive.
    .$if(f.isActive !== undefined, (q) => q.where(sql<boolean>`(w.is_active and not w.is_paused)`, '=', f.isActive as boolean))
    .$if(f.environmentId !== undefined, (q) => q.where('w.environment_id', '=', f.environmentId as string))
    .orderBy('w.created_at', 'asc')
    .orderBy('w.id', 'asc')
    .limit(f.limit)
    .execute();
}

/**
 * Every column of `webhooks`, named: a prepared statement selecting `w.*` fails on every
 * pooled connection once a migration adds a column ("cached plan must not change result
 * type"). The type check below makes a column added to the schema a compile error here.
 */
const WEBHOOK_COLUMNS = [
  'id', 'workspace_id', 'environment_id', 'connection_id', 'origin', 'integration_type', 'object_type', 'event_types',
  'legacy_events', 'hook_url', 'db_type', 'db_url_encrypted', 'db_url_redacted', 'db_schema', 'db_name_prefix',
  'webhook_type', 'interval_minutes', 'page_max_limit', 'filters', 'fields', 'include_raw', 'is_active', 'is_paused',
  'is_healthy', 'is_beta', 'checked_at', 'subscriptions', 'meta', 'secret_encrypted', 'previous_secret_encrypted',
  'previous_secret_expires_at', 'consecutive_failures', 'failing_since', 'disabled_reason', 'stream_id', 'initial_sync',
  'unhealthy_reason', 'created_at', 'updated_at',
] as const satisfies readonly (keyof WebhookRow)[];
const allWebhookColumnsNamed: Exclude<keyof WebhookRow, (typeof WEBHOOK_COLUMNS)[number]> extends never ? true : never = true;
void allWebhookColumnsNamed;
const WEBHOOK_SELECT = sql.raw(WEBHOOK_COLUMNS.map((c) => `w.${c}`).join(', '));

/** What the delivery worker needs of webhooks: the rows, their environment name and their connection's external_xref. */
export async function getWebhooksForDelivery(
  db: Db,
  ids: readonly string[],
): Promise<(WebhookWithEnv & { external_xref: string | null })[]> {
  if (ids.length === 0) return [];
  // Prepared (one array parameter): the worker runs this for every claimed batch.
  const r = await sql<WebhookWithEnv & { external_xref: string | null }>`${sql.raw(PREPARE)}
    select ${WEBHOOK_SELECT}, e.name as environment_name, c.external_xref
    from webhooks w
    join environments e on e.id = w.environment_id
    left join connections c on c.id = w.connection_id
    where w.id = any(${ids}::uuid[])
  `.execute(db);
  return r.rows;
}
