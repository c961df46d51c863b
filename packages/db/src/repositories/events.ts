import { stringifyExact } from '@hookpost/contract';
import { sql } from 'kysely';
import { inTransaction, PREPARE, type Db } from '../client.js';
import { firstIdAt } from '../ids.js';

export interface NewEvent {
  /** Hookpost's id for the event (a UUID chosen by the caller). */
  id: string;
  workspaceId: string;
  environmentId: string;
  /** The client's event id; a repeat within the workspace is the same event. */
  externalId: string | null;
  type: string;
  objectType: string | null;
  connectionId: string | null;
  data: Record<string, unknown>;
}

export interface IngestedEvent {
  /** The stored event's id: the new one, or the first one's for a repeat. */
  eventId: string;
  /** True when an event with the same external id already existed. */
  duplicate: boolean;
  /** Deliveries the event fanned out to. */
  deliveries: number;
}

/**
 * Stores events and fans each out to every matching webhook, in the caller's
 * transaction: one INSERT … SELECT, so an event reaching 10,000 webhooks is one
 * statement (matching rules: the `matched` step below). One statement, so atomic on its own: callers need no transaction unless they write
 * more. Returns one entry per input, in input order.
 */
export function ingestEvents(db: Db, events: readonly NewEvent[]): Promise<IngestedEvent[]> {
  return ingestRound(db, events, 0);
}

/** One statement of {@link ingestEvents}; `depth` counts the rounds for repeats whose first event vanished. */
async function ingestRound(db: Db, events: readonly NewEvent[], depth: number): Promise<IngestedEvent[]> {
  if (events.length === 0) return [];
  // The batch goes as one JSON document, not as one array per column: serialised in one
  // JSON.stringify and parsed once by Postgres, where a jsonb[] of stringified data was
  // escaped element by element into an array literal (the pg driver's escapeElement was
  // ~7 % of the API's CPU in bench (a)) and unescaped again on the server.
  const rows = events.map((e, ord) => ({
    ord,
    id: e.id,
    workspace_id: e.workspaceId,
    environment_id: e.environmentId,
    external_id: e.externalId,
    type: e.type,
    object_type: e.objectType,
    connection_id: e.connectionId,
    data: e.data,
  }));
  const inserted = await sql<{ id: string; deliveries: number }>`${sql.raw(PREPARE)}
    with input as (
      select * from jsonb_to_recordset(${stringifyExact(rows)}::jsonb)
        as t(ord int, id uuid, workspace_id uuid, environment_id uuid, external_id text, type text, object_type text, connection_id uuid, data jsonb)
    ),
    -- Who each event fans out to. Matching: same workspace and environment; the webhook's
    -- connection and object type when it has them; its event types (empty = all); its
    -- filters as string equality on the record's fields; active, unpaused, with a URL.
    -- Each matched webhook is locked FOR KEY SHARE (in id order), once per statement, as a
    -- foreign key check would per delivery row (migration 0006): a delete waits for this
    -- commit and deletes what it inserted; one deleted meanwhile is left out. The lock is
    -- taken here, on the scan, so that no plan joins two row sets the planner thought tiny.
    matched as materialized (
      select i.id as event_id, i.workspace_id, w.id as webhook_id
      from input i
      join webhooks w
        on w.workspace_id = i.workspace_id
       and w.environment_id = i.environment_id
       and w.is_active and not w.is_paused
      where w.hook_url is not null
        and (w.connection_id is null or w.connection_id = i.connection_id)
        and (w.object_type is null or w.object_type = i.object_type)
        and (cardinality(w.event_types) = 0 or i.type = any(w.event_types))
        and (w.filters = '{}'::jsonb or not exists (
              select 1 from jsonb_each_text(w.filters) f where (i.data ->> f.key) is distinct from f.value))
      order by w.id
      for key share of w
    ),
    -- The event keeps its fan-out count: a repeat answers with it, without counting
    -- deliveries (which need no index on event_id for it); and starts its count of the
    -- deliveries referring to it (refs, migration 0010) with it.
    -- Rows go in in (workspace, external id, input position) order. Each insert of an external
    -- id that a concurrent transaction has just inserted waits for that one; two batches
    -- holding the same ids in different orders would each wait for the other (a deadlock,
    -- answered 500) if they inserted in input order. Input position last: of an id repeated
    -- within the batch, the first is the one stored.
    ins as (
      insert into events (id, workspace_id, environment_id, external_id, type, object_type, connection_id, data, deliveries, refs)
      select i.id, i.workspace_id, i.environment_id, i.external_id, i.type, i.object_type, i.connection_id, i.data, coalesce(c.n, 0), coalesce(c.n, 0)
      from input i left join (select event_id, count(*)::int as n from matched group by event_id) c on c.event_id = i.id
      order by i.workspace_id, i.external_id, i.ord
      on conflict (workspace_id, external_id) where external_id is not null do nothing
      returning id, deliveries
    ),
    -- Only events actually inserted fan out (a repeat of an external id creates nothing).
    fan as (
      insert into deliveries (id, workspace_id, webhook_id, event_id, kind, status)
      select hookpost_uuid_v7(), m.workspace_id, m.webhook_id, m.event_id, 'event', 'pending'
      from matched m join ins on ins.id = m.event_id
      returning 1
    ),
    -- Wake the workers (delivered at commit), in the same statement: no extra round trip.
    woken as (select pg_notify('hookpost_deliveries', '') from (select 1 from fan limit 1) any_fan)
    select ins.id, ins.deliveries from ins cross join (select count(*) from woken) w
  `.execute(db);

  const byId = new Map(inserted.rows.map((r) => [r.id, r.deliveries]));
  const results: IngestedEvent[] = [];
  const missing = events.filter((e) => !byId.has(e.id));
  const existing = new Map<string, { id: string; deliveries: number }>();
  if (missing.length > 0) {
    // Repeats of an external id: answer with the first event, as it was stored.
    const lookup = () => sql<{ id: string; workspace_id: string; external_id: string; deliveries: number }>`
      select e.id, e.workspace_id, e.external_id, e.deliveries
      from events e
      join unnest(${missing.map((m) => m.workspaceId)}::uuid[], ${missing.map((m) => m.externalId)}::text[]) as k(workspace_id, external_id)
        on e.workspace_id = k.workspace_id and e.external_id = k.external_id
    `.execute(db);
    const rows = db.isTransaction ? await lookup() : await afterCommit(lookup);
    for (const r of rows.rows) existing.set(`${r.workspace_id}/${r.external_id}`, { id: r.id, deliveries: r.deliveries });
  }
  // A repeat whose first event was deleted (retention) between the insert and the lookup:
  // it is no longer a repeat, so it is stored now, as it would be had it come a moment later.
  const vanished = missing.filter((e) => !existing.has(`${e.workspaceId}/${e.externalId}`));
  const stored = new Map<string, IngestedEvent>();
  if (vanished.length > 0) {
    if (depth >= 3) throw storedAnswerUnknown(db, new Error(`events ${vanished.map((e) => e.id).join(', ')} were neither inserted nor found`));
    let again: IngestedEvent[];
    try {
      again = await ingestRound(db, vanished, depth + 1);
    } catch (err) {
      // Outside a transaction the first statement has committed: running the batch again would store its id-less events twice.
      throw storedAnswerUnknown(db, err);
    }
    vanished.forEach((e, i) => stored.set(e.id, again[i] as IngestedEvent));
  }
  for (const e of events) {
    const fresh = byId.get(e.id);
    if (fresh !== undefined) {
      results.push({ eventId: e.id, duplicate: false, deliveries: fresh });
      continue;
    }
    const first = existing.get(`${e.workspaceId}/${e.externalId}`);
    results.push(first ? { eventId: first.id, duplicate: true, deliveries: first.deliveries } : (stored.get(e.id) as IngestedEvent));
  }
  return results;
}

/** In a transaction nothing has committed (the caller may run it again); outside one, the first statement has. */
function storedAnswerUnknown(db: Db, err: unknown): unknown {
  return db.isTransaction || err instanceof EventsStoredAnswerUnknown ? err : new EventsStoredAnswerUnknown(err);
}

/**
 * The events were stored (their statement committed on its own, outside a transaction) but
 * the answer could not be read afterwards. Running the same events again would store the
 * ones without an external id twice, so the caller must not: it answers with this error
 * (the database's own `code` and message, so a dropped session still reads as one) and a
 * client's retry with the same event ids gets the first answer.
 */
export class EventsStoredAnswerUnknown extends Error {
  readonly code: unknown;
  constructor(cause: unknown) {
    super(cause instanceof Error ? cause.message : String(cause), { cause });
    this.name = 'EventsStoredAnswerUnknown';
    this.code = (cause as { code?: unknown } | null)?.code;
  }
}

/** A read after a commit: retried (it is only a read) on another session, then {@link EventsStoredAnswerUnknown}. */
async function afterCommit<T>(read: () => Promise<T>, tries = 3): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await read();
    } catch (err) {
      if (attempt >= tries) throw new EventsStoredAnswerUnknown(err);
      await new Promise((r) => setTimeout(r, 50 * attempt));
    }
  }
}

export interface IdempotentResponse {
  status: number;
  body: unknown;
  requestHash: Buffer;
}

/**
 * Claims idempotency keys for this transaction. Returns, per key, the stored response
 * of an earlier request with the same key (committed before), or null when the key is
 * new and now ours. A concurrent holder of the same key makes this wait for its commit.
 */
export function claimIdempotencyKeys(
  trx: Db,
  workspaceKeys: readonly { workspaceId: string; key: string; requestHash: Buffer }[],
): Promise<(IdempotentResponse | null)[]> {
  return claimKeys(trx, workspaceKeys, 0);
}

async function claimKeys(
  trx: Db,
  workspaceKeys: readonly { workspaceId: string; key: string; requestHash: Buffer }[],
  depth: number,
): Promise<(IdempotentResponse | null)[]> {
  if (workspaceKeys.length === 0) return [];
  // In key order: a claim of a key another transaction holds waits for it, and two groups
  // claiming the same keys in different orders would deadlock (one group failing over to
  // one-by-one commits) if each claimed in its own request order.
  const claimed = await sql<{ workspace_id: string; key: string }>`
    insert into idempotency_keys (workspace_id, key, request_hash)
    select * from unnest(${workspaceKeys.map((k) => k.workspaceId)}::uuid[], ${workspaceKeys.map((k) => k.key)}::text[],
                         ${workspaceKeys.map((k) => k.requestHash)}::bytea[]) as k(workspace_id, key, request_hash)
    order by k.workspace_id, k.key
    on conflict do nothing
    returning workspace_id, key
  `.execute(trx);
  const mine = new Set(claimed.rows.map((r) => `${r.workspace_id}/${r.key}`));
  const others = workspaceKeys.filter((k) => !mine.has(`${k.workspaceId}/${k.key}`));
  const stored = new Map<string, IdempotentResponse>();
  if (others.length > 0) {
    const rows = await sql<{ workspace_id: string; key: string; response_status: number; response_body: unknown; request_hash: Buffer }>`
      select i.workspace_id, i.key, i.response_status, i.response_body, i.request_hash
      from idempotency_keys i
      join unnest(${others.map((k) => k.workspaceId)}::uuid[], ${others.map((k) => k.key)}::text[]) as k(workspace_id, key)
        on i.workspace_id = k.workspace_id and i.key = k.key
    `.execute(trx);
    for (const r of rows.rows) {
      stored.set(`${r.workspace_id}/${r.key}`, { status: r.response_status, body: r.response_body, requestHash: r.request_hash });
    }
  }
  // A key deleted (retention) between the insert that found it and the read: expired, so new;
  // claimed again, or its response would not be stored and a repeat would be accepted anew.
  const vanished = others.filter((k) => !stored.has(`${k.workspaceId}/${k.key}`));
  if (vanished.length > 0 && depth < 3) {
    const again = await claimKeys(trx, vanished, depth + 1);
    vanished.forEach((k, i) => {
      const prior = again[i];
      if (prior) stored.set(`${k.workspaceId}/${k.key}`, prior);
    });
  }
  return workspaceKeys.map((k) => stored.get(`${k.workspaceId}/${k.key}`) ?? null);
}

/** Whether this key has a stored response (a request with it was answered and committed). */
export async function hasStoredResponse(db: Db, workspaceId: string, key: string): Promise<boolean> {
  const r = await sql`select 1 from idempotency_keys where workspace_id = ${workspaceId} and key = ${key} and response_status is not null`.execute(db);
  return r.rows.length > 0;
}

/** How many of these event ids (external ids) are stored in the workspace. */
export async function storedExternalIds(db: Db, workspaceId: string, externalIds: readonly string[]): Promise<number> {
  const r = await sql<{ n: number }>`
    select count(*)::int as n from events where workspace_id = ${workspaceId} and external_id = any(${[...new Set(externalIds)]}::text[])
  `.execute(db);
  return r.rows[0]?.n ?? 0;
}

export async function storeIdempotentResponses(
  trx: Db,
  responses: readonly { workspaceId: string; key: string; status: number; body: unknown }[],
): Promise<void> {
  if (responses.length === 0) return;
  await sql`
    update idempotency_keys i set response_status = r.status, response_body = r.body
    from unnest(${responses.map((r) => r.workspaceId)}::uuid[], ${responses.map((r) => r.key)}::text[],
                ${responses.map((r) => r.status)}::int[], ${responses.map((r) => JSON.stringify(r.body))}::jsonb[])
      as r(workspace_id, key, status, body)
    where i.workspace_id = r.workspace_id and i.key = r.key
  `.execute(trx);
}

/**
 * Deletes up to `batch` idempotency keys stored before `olderThan` (idempotency_keys_created);
 * returns how many. A repeat of a deleted key is a new request.
 */
export async function deleteOldIdempotencyKeys(db: Db, olderThan: Date, batch: number): Promise<number> {
  // By row address from an array (as deleteOldAttempts): as `(workspace_id, key) in
  // (subquery)` its generic plan read the whole primary key for every batch.
  const r = await sql`
    delete from idempotency_keys where ctid = any(array(
      select ctid from idempotency_keys where created_at < ${olderThan} order by created_at limit ${batch}
    ))
  `.execute(db);
  return Number(r.numAffectedRows ?? 0);
}

/** What one batch of event retention looked at and deleted. */
export interface EventRetentionBatch {
  /** Old events looked at (locked) in this batch; fewer than the batch size: none are left. */
  scanned: number;
  deleted: number;
  /** The last event looked at: the next batch starts after it. */
  lastId: string | null;
}

/**
 * Deletes, of the next `batch` events made before `olderThan` (by id, after `afterId`), those
 * no delivery refers to any more (`refs` = 0; retention deletes finished deliveries first).
 * The events are locked first (SKIP LOCKED: one a replay holds is left for the next pass): a
 * replay copies a delivery's event_id, locks that event FOR KEY SHARE and raises its count
 * (deliveries.replayDeliveries), so the count read after the lock includes every replay that
 * committed before, and a replay that comes later finds the event gone and replays nothing.
 * An event not counted yet (stored before migration 0010) is counted here, in a statement of
 * its own, after the lock. Found through the primary key, like deliveries (firstIdAt).
 */
export async function deleteOldEvents(db: Db, olderThan: Date, batch: number, afterId: string | null = null): Promise<EventRetentionBatch> {
  return inTransaction(db, async (trx) => {
    const locked = await sql<{ id: string; refs: number | null }>`
      select e.id, e.refs from events e
       where e.id < ${firstIdAt(olderThan)}::uuid and e.created_at < ${olderThan}
         ${afterId === null ? sql`` : sql`and e.id > ${afterId}::uuid`}
       order by e.id limit ${batch}
       for update skip locked
    `.execute(trx);
    const rows = locked.rows;
    if (rows.length === 0) return { scanned: 0, deleted: 0, lastId: null };
    const uncounted = rows.filter((r) => r.refs === null).map((r) => r.id);
    if (uncounted.length > 0) {
      // One scan of deliveries for the batch's uncounted events (there is no index on event_id).
      await sql`
        update events e set refs = coalesce(c.n, 0)
          from unnest(${uncounted}::uuid[]) as u(id)
          left join (select event_id, count(*)::int as n from deliveries where event_id = any(${uncounted}::uuid[]) group by event_id) c on c.event_id = u.id
         where e.id = u.id
      `.execute(trx);
    }
    const r = await sql`delete from events e where e.id = any(${rows.map((x) => x.id)}::uuid[]) and e.refs = 0`.execute(trx);
    return { scanned: rows.length, deleted: Number(r.numAffectedRows ?? 0), lastId: rows[rows.length - 1]?.id ?? null };
  });
}
