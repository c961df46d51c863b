import { stringifyExact } from '@hookpost/contract';
import { sql, type Kysely, type RawBuilder, type SqlBool } from 'kysely';
import { inTransaction, PREPARE, retryingDeadlocks, type Db } from '../client.js';
import { afterDbWait, msUntil } from '../db-clock.js';
import { firstIdAt } from '../ids.js';
import type { Database, DeliveryAttemptRow, DeliveryKind, DeliveryRow, DeliveryStatus } from '../schema.js';
import { inScope, type Scope } from './scope.js';

/**
 * Whether deliveries to the webhook `w` may be sent now: active, not paused, and with a URL
 * to send to. One without (a database target: the worker does not write to databases yet)
 * has its deliveries held like a paused one's, not claimed and handed back at every claim;
 * the lease reaper requeues them once it has a URL again (requeueHeldOfResumed).
 */
const SENDABLE_W = sql.raw('(w.is_active and not w.is_paused and w.hook_url is not null)');

/** A delivery claimed by a worker, with what it needs to render the message. */
export interface ClaimedDelivery {
  id: string;
  webhook_id: string;
  event_id: string | null;
  kind: DeliveryKind;
  /**
   * A test or virtual delivery's stored payload (jsonb text), not parsed: node-pg's JSON.parse
   * would round numbers a double cannot hold (messageOf parses it with parseExact).
   */
  payload_json: string | null;
  /** Attempts including the one just claimed. */
  attempts: number;
  created_at: Date;
  event_type: string | null;
  event_object_type: string | null;
  /**
   * The event's data as stored (jsonb text), not parsed: the Truto and Hookpost envelopes
   * embed it as is when nothing is projected out of it (see @hookpost/delivery messages.ts).
   */
  event_data_json: string | null;
  /** Whether the event's data has a top-level `raw` (dropped unless the webhook includes it). */
  event_has_raw: boolean | null;
  event_created_at: Date | null;
  /** The webhook's `updated_at` as of the claim (its version); null: the webhook is gone. */
  webhook_updated_at: Date | null;
}

/** What a claim took: the deliveries to send, and how many it found for stopped webhooks and held. */
export interface Claim {
  deliveries: ClaimedDelivery[];
  /**
   * Due deliveries whose webhook was paused or disabled (as the claim read it), held instead
   * of claimed. Only races leave such rows pending: a release or a retry that read the
   * webhook just before the pause committed, after the pause had held the rest.
   */
  held: number;
  /**
   * Where the next claim's stepping goes on (pass it back as `stepAfter`): the last webhook this
   * one stepped to when it stopped at MAX_STEPS; null when it did not step or reached the end.
   */
  stepAfter: string | null;
  /** Whether this claim stepped webhook by webhook (see dueOfWebhooksNotIn). */
  stepped: boolean;
  /** Where the next claim's look past a dominating webhook goes on (pass it back as `fairAfter`; see fairnessCtes). */
  fairAfter: string | null;
}

/**
 * `and` deliveries of none of these webhooks (none: no condition). As `not in` over the
 * unnested list, which the planner hashes (a hashed SubPlan), not `<> all(array)`, which
 * compares every due row it reads with each id in turn: with 1,000 webhooks left out and
 * their 300,000 due rows in front, a claim took 1,050 ms against 105 (bench:claims).
 * The ids are never null, so `not in` means what it says.
 */
function notOfWebhooks(ids: readonly string[]) {
  return ids.length > 0 ? sql`and webhook_id not in (select unnest(${ids}::uuid[]))` : sql``;
}

/**
 * How many due rows of webhooks left out a claim (or nextDueAt) reads in the due index before
 * it steps from webhook to webhook instead (`past_left_out`). Reading one costs ~0.5 µs; a
 * step, two index descents per webhook with pending deliveries. Under this, left-out rows in
 * front cost little to read past; over it, the read would grow with their backlog (300,000
 * rows: 169 ms per claim), the steps only with the number of webhooks.
 */
const FRONT_SLACK = 4096;

/** Where stepping starts when no claim left off anywhere: below every id. */
const NO_WEBHOOK = '00000000-0000-0000-0000-000000000000';

/**
 * How many webhooks one claim steps through at most (7 µs each): past that it stops, and the
 * next claim goes on from the last one it reached (Claim.stepAfter), so a claim costs a few ms
 * however many webhooks have pending deliveries, and every one of them gets its turn.
 */
const MAX_STEPS = 1000;
/**
 * Webhooks nextDueAt looks at past a front full of left-out ones (unbounded, it walked every
 * webhook with pending deliveries each time the worker went idle: 15 ms at 1,000). Past them it
 * asks again within a second.
 */
const NEXT_DUE_STEPS = 100;

/**
 * How many other webhooks a claim whose front one webhook dominates looks at for due rows
 * (fairnessCtes), and how many rows it takes of each. Bounded like MAX_STEPS: the next such
 * claim goes on from the last one reached (Claim.fairAfter).
 */
const MAX_FAIR_STEPS = 100;
const FAIR_ROWS = 32;

/**
 * The recursive CTE `webhook_heads` (or `name`): webhooks with pending deliveries, in id order
 * from above `after` (null: from the start), each with its earliest due time: one descent of
 * deliveries_webhook_due per webhook (its first entry above the last webhook's id), at most
 * `maxSteps` of them. Its cost grows with the webhooks, not their rows. Each step is a call of
 * hookpost_pending_webhook_after (migration 0014): inlined here, the step's generic plan, made
 * while the queue was small, read deliveries_due and sorted every pending row by webhook.
 */
function webhookHeads(after: string | null, maxSteps: number, name = 'webhook_heads') {
  const self = sql.raw(name);
  return sql`${self} (webhook_id, next_attempt_at, step) as (
      (select f.webhook_id, f.next_attempt_at, 1 from hookpost_pending_webhook_after(${after ?? NO_WEBHOOK}::uuid) f)
      union all
      select n.webhook_id, n.next_attempt_at, h.step + 1 from ${self} h
      cross join lateral hookpost_pending_webhook_after(h.webhook_id) n
      where h.step < ${maxSteps}
    )`;
}

/**
 * CTEs `open_front` (due rows read from the due index, in due order, of webhooks not left
 * out; at most `window`) and `past_left_out` (when that read met more than FRONT_SLACK rows
 * of webhooks left out before it had `window`: up to MAX_STEPS webhooks with pending
 * deliveries from above `stepAfter`, found in deliveries_webhook_due by stepping from one
 * webhook id to the next, with their earliest due times). The query names `blocked` to choose
 * between them; `past_left_out` is only read (and so only walked) when it is true. `stepping`
 * says whether it stepped, and from where the next claim goes on (null: the start).
 */
function dueOfWebhooksNotIn(ids: readonly string[], window: number, stepAfter: string | null) {
  return sql`
    front as materialized (
      -- Not locked (see candidates). Bounded: the read stops at window + FRONT_SLACK rows.
      select id, webhook_id, next_attempt_at from deliveries
      where status = 'pending' and next_attempt_at <= now()
      order by next_attempt_at
      limit ${window + FRONT_SLACK}
    ),
    open_front as materialized (
      -- In the front's order, as its rows come out of it; no ORDER BY here: on PostgreSQL 15
      -- and 16 it sorted the whole front, so every claim leaving anything out read all of it.
      -- (The batch is picked in due order below, whatever order these come in.)
      select id, webhook_id, next_attempt_at from front where true ${notOfWebhooks(ids)}
      limit ${window}
    ),
    blocked as materialized (
      -- Evaluated left to right and only as far as needed: the front is counted only when
      -- the rows of webhooks not left out did not fill the window (it was read whole then).
      select (select count(*) from open_front) < ${window} and (select count(*) from front) = ${window + FRONT_SLACK} as yes
    ),
    ${webhookHeads(stepAfter, MAX_STEPS)},
    past_left_out as materialized (
      select webhook_id, next_attempt_at from webhook_heads
      where (select yes from blocked) and next_attempt_at <= now() ${notOfWebhooks(ids)}
    ),
    stepping as materialized (
      select (select yes from blocked) as stepped,
             case when (select yes from blocked) then (select case when count(*) >= ${MAX_STEPS} then max(webhook_id::text) end from webhook_heads) end as step_after
    )`;
}

/**
 * Due deliveries to choose a claim's batch from, as the CTE `candidates`: up to `window`,
 * earliest due first. With webhooks left out, their rows are skipped (dueOfWebhooksNotIn).
 */
function candidatesCte(exclude: readonly string[], window: number, perWebhook: number, stepAfter: string | null) {
  if (exclude.length === 0) {
    return sql`
    candidates as materialized (
      -- Read, not locked: a batch looks at 4 × limit due rows to pick at most perWebhook per
      -- webhook, and locking them all wrote a lock record per row (3/4 of them never claimed:
      -- ~2.5 × the claim's WAL with one busy webhook). Only the picked rows are locked, below.
      select id, webhook_id, next_attempt_at from deliveries
      where status = 'pending' and next_attempt_at <= now()
      order by next_attempt_at
      limit ${window}
    )`;
  }
  return sql`${dueOfWebhooksNotIn(exclude, window, stepAfter)},
    candidates as materialized (
      select id, webhook_id, next_attempt_at from open_front where not (select yes from blocked)
      union all
      select * from (
        -- Each webhook's own earliest due rows, from its range of deliveries_webhook_due.
        select r.id, p.webhook_id, r.next_attempt_at from past_left_out p
        cross join lateral hookpost_due_of_webhook(p.webhook_id, ${perWebhook}) r
        order by r.next_attempt_at limit ${window}
      ) stepped
    )`;
}

/**
 * CTEs after `candidates`: `others`, due rows of webhooks behind the front, and `fairness`,
 * where the next claim's look goes on from. A claim reads due rows in due order and takes at
 * most `perWebhook` of each webhook: behind one webhook's backlog (a fast endpoint is never
 * left out: its lane keeps up), another webhook's rows were not seen until most of that
 * backlog was sent (a delivery waited 10.7 s behind 20,000 of an endpoint answering in
 * 150 ms). So when a webhook has more rows in the front than it may take (`dominated`), the
 * claim also steps through up to MAX_FAIR_STEPS webhooks with pending deliveries (from
 * `fairAfter`; one descent of deliveries_webhook_due each, 7 µs) and takes up to FAIR_ROWS
 * due rows of each not in the front. Not dominated (no backlog, or many webhooks sharing the
 * front), the steps are not taken: the condition is a one-time filter.
 */
function fairnessCtes(exclude: readonly string[], perWebhook: number, limit: number, fairAfter: string | null) {
  // More than the claim takes of it: past its share, or past the whole claim (a claim with
  // little room, its front of 4 × limit rows all of one backlog, whose share is larger than
  // that front: not "dominated" by the share alone, it took only that backlog, claim after
  // claim, and another webhook's delivery waited for the whole backlog in a loaded test run).
  return sql`
    dominated as materialized (
      select exists (select 1 from candidates group by webhook_id having count(*) > ${Math.min(perWebhook, limit)}) as yes
    ),
    ${webhookHeads(fairAfter, MAX_FAIR_STEPS, 'fair_heads')},
    others as materialized (
      select r.id, h.webhook_id, r.next_attempt_at from fair_heads h
      cross join lateral hookpost_due_of_webhook(h.webhook_id, ${Math.min(FAIR_ROWS, perWebhook)}) r
      where (select yes from dominated) and h.next_attempt_at <= now()
        and h.webhook_id not in (select webhook_id from candidates) ${exclude.length > 0 ? sql`and h.webhook_id not in (select unnest(${exclude}::uuid[]))` : sql``}
    ),
    fairness as materialized (
      select case when (select yes from dominated)
                  then (select case when count(*) >= ${MAX_FAIR_STEPS} then max(webhook_id::text) end from fair_heads)
                  else ${fairAfter}::text end as fair_after
    )`;
}

/**
 * Claims up to `limit` due deliveries for `workerId` with FOR UPDATE SKIP LOCKED, and
 * leases them for `leaseMs`: several workers share the queue without double-sending,
 * and a crashed worker's deliveries come back when the lease runs out. At most
 * `perWebhook` are taken per webhook, so one busy endpoint cannot fill a batch;
 * `excludeWebhooks` are endpoints this worker already has a backlog for (however many
 * due rows they have: see dueOfWebhooksNotIn). Deliveries of
 * paused or disabled webhooks are held, not claimed: nothing is sent to a stopped webhook
 * that the claim saw stopped. The claim commits without waiting for its WAL flush (see
 * the statement); run inside a transaction, it makes that whole transaction's commit
 * asynchronous, so call it on its own.
 */
export async function claimDue(
  db: Db,
  options: { workerId: string; limit: number; perWebhook: number; leaseMs: number; excludeWebhooks?: readonly string[]; stepAfter?: string | null; fairAfter?: string | null },
): Promise<Claim> {
  const exclude = options.excludeWebhooks ?? [];
  const withEvents = sql`claimed c cross join no_flush_wait left join events e on e.id = c.event_id and c.live`;
  // Prepared: planning cost as much as running it for small batches. The generic plan is
  // sound because the worker's sessions cannot scan the table (see QUEUE_SESSION_SETTINGS).
  const result = await sql<ClaimedDelivery & { live: boolean | null; stepped?: boolean; step_after?: string | null; fair_after: string | null }>`${sql.raw(PREPARE)}
    with recursive ${candidatesCte(exclude, options.limit * 4, options.perWebhook, options.stepAfter ?? null)},
    ${fairnessCtes(exclude, options.perWebhook, options.limit, options.fairAfter ?? null)},
    picked as materialized (
      -- Round robin over the webhooks (each one's first row, then each one's second...), each
      -- in due order: several webhooks at their share cannot fill the batch before the others.
      select id from (
        select id, next_attempt_at, row_number() over (partition by webhook_id order by next_attempt_at, id) as rn
        from (select * from candidates union all select * from others) c
      ) ranked
      where rn <= ${options.perWebhook} order by rn, next_attempt_at limit ${options.limit}
    ),
    locked as (
      -- By primary key from a materialized list (a join back to deliveries let the planner
      -- re-run the window per pending row). SKIP LOCKED: another worker's claim in progress;
      -- the qual is rechecked on the current row version, so a row claimed meanwhile is left.
      -- The recheck is a CASE so that it cannot select deliveries_due: that index, read here
      -- with the id list as a filter, walked its whole backlog (38,000 rows for 128).
      select id, webhook_id from deliveries
      where id = any(array(select id from picked))
        and case when status = 'pending' then next_attempt_at <= now() else false end
      for update skip locked
    ),
    judged as (
      -- The webhook as of this statement: live (or gone: the worker drops those, see
      -- deleteOrphanClaims) is claimed; paused or disabled is held until its resume.
      select l.id, w.updated_at as webhook_updated_at, (w.id is null or ${SENDABLE_W}) as live
      from locked l left join webhooks w on w.id = l.webhook_id
    ),
    claimed as (
      update deliveries d
         set status = case when j.live then 'delivering' else 'held' end,
             attempts = d.attempts + case when j.live then 1 else 0 end,
             lease_until = case when j.live then now() + make_interval(secs => ${options.leaseMs / 1000}) end,
             leased_by = case when j.live then ${options.workerId} end, updated_at = now()
        from judged j where d.id = j.id
      returning d.id, d.webhook_id, d.event_id, d.kind, d.payload::text as payload_json, d.attempts, d.created_at, j.webhook_updated_at, j.live
    ),
    -- The claim commits without waiting for its WAL flush: it is on the way from NOTIFY to
    -- the send (at 500 events/s, p50 ingest-to-receipt 7.6-13.7 -> 5.3-6.3 ms). Lost in a
    -- Postgres crash, a claim is as if never made: the delivery is pending again and is
    -- re-sent with the same webhook-id, as after an expired lease. The completion commits
    -- durably, and its flush takes the claim's WAL with it.
    no_flush_wait as (select set_config('synchronous_commit', 'off', true))
    select c.*, e.type as event_type, e.object_type as event_object_type, e.data::text as event_data_json, e.data ? 'raw' as event_has_raw, e.created_at as event_created_at
    ${
      // One row even when nothing is claimed (its delivery columns null): how it stepped.
      exclude.length === 0
        ? sql`, f.fair_after from fairness f left join (${withEvents}) on true`
        : sql`, s.stepped, s.step_after, f.fair_after from stepping s cross join fairness f left join (${withEvents}) on true`
    }
  `.execute(db);
  const claimed: ClaimedDelivery[] = [];
  let held = 0;
  for (const { live, stepped: _stepped, step_after: _stepAfter, fair_after: _fairAfter, ...delivery } of result.rows) {
    if (live === null) continue; // the stepping row of a claim that took nothing
    if (live) claimed.push(delivery);
    else held++;
  }
  const first = result.rows[0];
  return { deliveries: claimed, held, stepAfter: first?.step_after ?? null, stepped: first?.stepped === true, fairAfter: first?.fair_after ?? null };
}

/**
 * When the next pending delivery (of a webhook not excluded) falls due, on this process's
 * clock; null: none pending. Due times are the database's (the claim compares them with its
 * `now()`), so the wait is measured there and added to this clock: a worker whose clock runs
 * ahead of the database's would otherwise wake early, find nothing due, and ask again at once.
 */
export async function nextDueAt(db: Db, excludeWebhooks: readonly string[] = []): Promise<Date | null> {
  if (excludeWebhooks.length === 0) {
    const r = await sql<{ in_ms: number | null }>`
      select ${msUntil(sql`min(next_attempt_at)`)} as in_ms from deliveries where status = 'pending'
    `.execute(db);
    return afterDbWait(r.rows[0]?.in_ms);
  }
  // As the claim reads past the webhooks it leaves out (dueOfWebhooksNotIn), but over all
  // pending rows, due or not: the earliest in the front of the due index, or, when rows of
  // webhooks left out fill it, the earliest of the other webhooks' first rows.
  const r = await sql<{ in_ms: number | null }>`
    with recursive front as materialized (
      select webhook_id, next_attempt_at from deliveries where status = 'pending'
      order by next_attempt_at limit ${FRONT_SLACK}
    ),
    ${webhookHeads(null, NEXT_DUE_STEPS)}
    select ${msUntil(sql`coalesce(
      -- The first of the front not left out (not min(): that read all of the front every time).
      (select next_attempt_at from front where true ${notOfWebhooks(excludeWebhooks)} limit 1),
      case when (select count(*) from front) = ${FRONT_SLACK}
        -- The walk stopped at its bound: webhooks past it may be due sooner; ask again in a second.
        then (select case when n >= ${NEXT_DUE_STEPS} then least(m, now() + interval '1 second') else m end
                from (select count(*) as n, min(next_attempt_at) filter (where true ${notOfWebhooks(excludeWebhooks)}) as m from webhook_heads) h) end)`)} as in_ms
  `.execute(db);
  return afterDbWait(r.rows[0]?.in_ms);
}

/**
 * For claimed last pages of initial syncs (INITIAL-COMPLETE): how long until their webhook's
 * earlier pages (virtual deliveries created no later) have had their first attempt, in ms on
 * the database's clock (0: one is being sent now); those with none left out. A last page goes
 * after the first attempt of every page before it: its receivers take it as the sync's end.
 * Pages of one run commit together and were sent side by side, so the last one often arrived
 * before some of the others. A page in its retries does not hold it (one that kept failing
 * held it for its whole retry schedule, ~20 days).
 */
export async function earlierPagesWait(db: Db, pages: readonly { id: string; webhookId: string; createdAt: Date }[]): Promise<Map<string, number>> {
  if (pages.length === 0) return new Map();
  const r = await sql<{ id: string; wait_ms: number | null }>`
    select c.id, ${msUntil(sql`least(
      -- Not tried yet: from deliveries_webhook_due, the webhook's pending rows. Not tried is
      -- no attempt logged: a claim lost in a crash counted one (attempts is counted at claim).
      (select min(o.next_attempt_at) from deliveries o
        where o.status = 'pending' and o.webhook_id = c.webhook_id and o.kind = 'virtual'
          and o.id <> c.id and o.created_at <= c.created_at
          and (o.attempts = 0 or not exists (select 1 from delivery_attempts a where a.delivery_id = o.id))),
      -- Its first attempt being made (in this claim, often): from the webhook's deliveries.
      (select now() from deliveries o
        where o.webhook_id = c.webhook_id and o.created_at <= c.created_at
          and o.status = 'delivering' and o.kind = 'virtual' and o.id <> c.id
          and not exists (select 1 from delivery_attempts a where a.delivery_id = o.id) limit 1))`)} as wait_ms
    from unnest(${pages.map((p) => p.id)}::uuid[], ${pages.map((p) => p.webhookId)}::uuid[], ${pages.map((p) => p.createdAt)}::timestamptz[]) as c(id, webhook_id, created_at)
  `.execute(db);
  return new Map(r.rows.filter((x) => x.wait_ms !== null).map((x) => [x.id, Math.max(0, Number(x.wait_ms))]));
}

/**
 * One claim of a delivery: the worker and the attempt number the claim gave it. A worker
 * claims its own delivery again after a lease it let run out (the reaper put it back), so
 * the worker alone does not tell its claims apart; the attempt number does (it only grows
 * while a delivery is sent: a release undoes the claim of a delivery never sent).
 */
export interface ClaimRef {
  id: string;
  attempts: number;
}

/** A claim handed back unsent; `postponeMs`: not due again before then (none: due at once). */
export interface ReleasedClaim extends ClaimRef {
  postponeMs?: number;
}

/**
 * Returns claimed-but-unsent deliveries to the queue, as if never claimed (no attempt spent);
 * a claim since superseded is left alone. One that is postponed is not due again before its
 * time: its endpoint has all the sends it may have here, and due at once it would only be
 * claimed and handed back again, while it kept the deliveries due after it out of claims.
 */
export async function releaseClaims(db: Db, workerId: string, claims: readonly ReleasedClaim[]): Promise<void> {
  if (claims.length === 0) return;
  await sql`
    update deliveries d
       set status = case when ${SENDABLE_W} then 'pending' else 'held' end,
           attempts = d.attempts - 1, lease_until = null, leased_by = null, updated_at = now(),
           next_attempt_at = case when c.postpone_ms > 0 then greatest(d.next_attempt_at, now() + make_interval(secs => c.postpone_ms / 1000.0)) else d.next_attempt_at end
      from unnest(${claims.map((c) => c.id)}::uuid[], ${claims.map((c) => c.attempts)}::int[], ${claims.map((c) => Math.max(0, Math.round(c.postponeMs ?? 0)))}::int[]) as c(id, attempts, postpone_ms), webhooks w
     where d.id = c.id and w.id = d.webhook_id and d.leased_by = ${workerId} and d.attempts = c.attempts -- still this claim, so delivering (0005)
  `.execute(db);
}

/**
 * Deletes claimed deliveries whose webhook no longer exists, with their attempt log. Every
 * insert locks its webhooks, so they come only from code older than migration 0006 deleting
 * a webhook (without its deliveries) during a rolling upgrade.
 */
export async function deleteOrphanClaims(db: Db, workerId: string, ids: readonly string[]): Promise<void> {
  if (ids.length === 0) return;
  await deleteDeliveriesWhere(
    db,
    sql<SqlBool>`d.id = any(${ids}::uuid[]) and d.leased_by = ${workerId} and not exists (select 1 from webhooks w where w.id = d.webhook_id)`,
  );
}

/**
 * Deletes the deliveries (`d`) that match, and their attempt log, in one statement, and
 * lowers their events' counts of deliveries referring to them (events.refs, migration 0010:
 * what event retention goes by); returns how many deliveries. Every delete of deliveries
 * comes here.
 */
async function deleteDeliveriesWhere(db: Db, where: RawBuilder<SqlBool>): Promise<number> {
  const r = await retryingDeadlocks(db, () => sql<{ n: string }>`
    with gone as (delete from deliveries d where ${where} returning d.id, d.event_id),
    logged as (delete from delivery_attempts a using gone where a.delivery_id = gone.id),
    -- Every event, counted or not (null stays null): one event retention is counting waits
    -- for that count (it holds the event) and lowers it then.
    unreferenced as (
      update events e set refs = e.refs - g.n
        from (select event_id, count(*)::int as n from gone where event_id is not null group by event_id) g
       where e.id = g.event_id
    )
    select count(*) as n from gone
  `.execute(db));
  return Number(r.rows[0]?.n ?? 0);
}

/** Claims past the last attempt that may be lost (a crash, a result not recorded) before a delivery is given up. */
export const LOST_CLAIMS_ALLOWED = 2;

/**
 * Puts back deliveries whose lease ran out (their worker died mid-send, or never sent what
 * it had queued). A claim whose attempt was lost does not end a delivery on its own, even
 * its last: it is tried again (the send after the last decides). Only one that has lost
 * LOST_CLAIMS_ALLOWED claims beyond `maxAttempts` is dead: a delivery that kills every
 * worker sending it would otherwise come back at every lease, forever.
 */
export async function reclaimExpiredLeases(db: Db, maxAttempts: number): Promise<number> {
  const limit = maxAttempts + LOST_CLAIMS_ALLOWED;
  const r = await sql`
    update deliveries
       set status = case when attempts >= ${limit} then 'dead' else 'pending' end,
           finished_at = case when attempts >= ${limit} then now() end,
           last_error = case when attempts >= ${limit}
                             then 'lease_expired: its last claims did not finish (the workers sending it stopped)' else last_error end,
           lease_until = null, leased_by = null, updated_at = now()
    where status = 'delivering' and lease_until < now()
  `.execute(db);
  return Number(r.numAffectedRows ?? 0);
}

export interface AttemptRecord {
  deliveryId: string;
  webhookId: string;
  attempt: number;
  startedAt: Date;
  durationMs: number;
  statusCode: number | null;
  outcome: string;
  error: string | null;
  responseSnippet: string | null;
  requestHeaders: Record<string, string>;
}

export interface Completion {
  id: string;
  /** The attempt number its claim gave it ({@link ClaimRef}): a completion of an earlier claim changes nothing. */
  attempt: number;
  status: Extract<DeliveryStatus, 'succeeded' | 'pending' | 'dead'>;
  /** For `pending`: when to try again. */
  nextAttemptAt: Date | null;
  statusCode: number | null;
  error: string | null;
}

/**
 * Text from outside (a receiver's answer, an error message) as Postgres can store it: NUL
 * (which no text column holds) as U+FFFD. One such string failed the whole batch of
 * completions it was written with, on every try.
 */
function storableText(s: string | null): string | null {
  return s !== null && s.includes('\u0000') ? s.replaceAll('\u0000', '\ufffd') : s;
}

/**
 * Records a batch of finished attempts in one statement: the deliveries' new states,
 * the attempt log, and — for webhooks whose last counted outcome in the batch is a success
 * (no failure after it, no 410) — the end of any failure streak. Only rows still under the
 * claim that was sent change (`workerId`, the attempt number): those are `updated`, the
 * completions that counted; every attempt is logged, once (a unique index; a late completion
 * of an earlier claim says nothing about the webhook and heals nothing). Failures are applied
 * to webhook health by the caller (recordResults in @hookpost/delivery, with
 * webhookHealth.applyHealth), for the completions that counted.
 */
export async function completeBatch(
  db: Db,
  workerId: string,
  completions: readonly Completion[],
  attempts: readonly AttemptRecord[],
  /**
   * The same batch again, after a try whose answer was lost (it may have committed). Those
   * the lost try settled are `settled` (their lease released, still at this attempt, its log
   * entry the one this batch wrote, by the statement that released it): counted as late
   * instead, their health (a 410's disable, a failure streak) and their retry's wake-up were
   * dropped. Its log entries are skipped (the unique index on delivery and attempt number).
   * The caller must make sure the lost try has ended first (recordResults locks the rows).
   */
  again = false,
): Promise<{ updated: Set<string>; settled: Set<string> }> {
  if (completions.length === 0 && attempts.length === 0) return { updated: new Set(), settled: new Set() };
  // Retry times go as waits from now, added to the database's clock: the claim compares
  // them with its now(), whatever this process's clock says.
  const writtenAt = Date.now();
  // Prepared, like the claim (QUEUE_SESSION_SETTINGS keep its generic plan on the primary key).
  const r = await sql<{ updated: string[]; settled: string[] }>`${sql.raw(PREPARE)}
    with updated as (
      -- A retry for a webhook paused meanwhile waits, held, for its resume.
      update deliveries d
         set status = case when c.status = 'pending' and not ${SENDABLE_W} then 'held' else c.status end,
             next_attempt_at = coalesce(now() + make_interval(secs => c.next_in_ms / 1000.0), d.next_attempt_at),
             last_status_code = c.code, last_error = c.error, lease_until = null, leased_by = null,
             updated_at = now(), finished_at = case when c.status in ('succeeded', 'dead') then now() else null end
        from unnest(${completions.map((c) => c.id)}::uuid[], ${completions.map((c) => c.attempt)}::int[], ${completions.map((c) => c.status)}::text[],
                    ${completions.map((c) => (c.nextAttemptAt ? Math.max(0, c.nextAttemptAt.getTime() - writtenAt) : null))}::float8[], ${completions.map((c) => c.statusCode)}::int[],
                    ${completions.map((c) => storableText(c.error))}::text[]) with ordinality as c(id, attempt, status, next_in_ms, code, error, ord),
             webhooks w
       -- By primary key: \`leased_by\` implies status 'delivering' (migration 0005); naming the
       -- status would let the planner walk the dead entries of deliveries_leased instead.
       -- The claim's attempt number: a late completion of an earlier claim (its lease ran out,
       -- the delivery was claimed again, by this worker too) must not end the later one.
       where d.id = c.id and w.id = d.webhook_id and d.leased_by = ${workerId} and d.attempts = c.attempt
      -- What the outcome means for health, as tallyHealth (@hookpost/delivery) reads it: a 2xx
      -- ends a streak, a 410 disables, a 429 is neither, anything else is a failure.
      returning d.id, d.webhook_id, c.ord, c.status = 'succeeded' as ok, coalesce(c.code = 410, false) as gone,
                c.status <> 'succeeded' and c.code is distinct from 410 and c.code is distinct from 429 as failed
    ),
    logged as (
      insert into delivery_attempts (delivery_id, webhook_id, attempt, started_at, duration_ms, status_code, outcome, error, response_snippet, request_headers)
      select * from unnest(
        ${attempts.map((a) => a.deliveryId)}::uuid[], ${attempts.map((a) => a.webhookId)}::uuid[], ${attempts.map((a) => a.attempt)}::int[],
        ${attempts.map((a) => a.startedAt)}::timestamptz[], ${attempts.map((a) => a.durationMs)}::int[], ${attempts.map((a) => a.statusCode)}::int[],
        ${attempts.map((a) => a.outcome)}::text[], ${attempts.map((a) => storableText(a.error))}::text[], ${attempts.map((a) => storableText(a.responseSnippet))}::text[],
        ${attempts.map((a) => JSON.stringify(a.requestHeaders))}::jsonb[])
        as a(delivery_id, webhook_id, attempt, started_at, duration_ms, status_code, outcome, error, response_snippet, request_headers)
      -- A first try meets no entry of its own attempts (a conflict would be an error, and its
      -- retry); a retry after a lost answer skips those the lost try wrote.
      ${again ? sql`on conflict (delivery_id, attempt) do nothing` : sql``}
      returning 1
    ),
    healed as (
      -- Webhooks whose counted outcomes in this batch end on a success: only completions that
      -- counted (a late one of an earlier claim says nothing new, healing or failing). A mark
      -- of the webhook's failing source (unhealthy_reason 'source:…') is the source's to undo.
      -- Index order over a sorted id list: concurrent statements lock in the same order.
      update webhooks set consecutive_failures = 0, failing_since = null, checked_at = now(),
             is_healthy = is_healthy or coalesce(unhealthy_reason not like 'source:%', true)
      where id = any(array(
              select webhook_id from updated group by webhook_id
              having bool_or(ok) and not bool_or(gone) and max(ord) filter (where ok) > coalesce(max(ord) filter (where failed), 0)
              order by webhook_id))
        and (consecutive_failures > 0 or (not is_healthy and coalesce(unhealthy_reason not like 'source:%', true)))
      returning 1
    )
    ${
      again
        ? sql`, settled as (
      select d.id from deliveries d
        join unnest(${attempts.map((a) => a.deliveryId)}::uuid[], ${attempts.map((a) => a.attempt)}::int[], ${attempts.map((a) => a.startedAt)}::timestamptz[])
          as a(id, attempt, started_at) on d.id = a.id
       where d.leased_by is null and d.attempts = a.attempt
         -- Logged by the statement that released it (both now() of one statement): not a
         -- late completion, logged after the lease reaper had put the delivery back.
         and exists (select 1 from delivery_attempts x where x.delivery_id = a.id and x.attempt = a.attempt and x.started_at = a.started_at
                        and x.created_at = d.updated_at)
    )`
        : sql``
    }
    select array(select id from updated) as updated, ${again ? sql`array(select id from settled)` : sql`'{}'::uuid[]`} as settled,
           (select count(*) from logged) as logged, (select count(*) from healed) as healed
  `.execute(db);
  const row = r.rows[0];
  return { updated: new Set(row?.updated ?? []), settled: new Set(row?.settled ?? []) };
}

/** Locks these deliveries (in id order), waiting for whoever holds them: a completion's lost try still running on the server. */
export async function lockDeliveries(db: Db, ids: readonly string[]): Promise<void> {
  if (ids.length === 0) return;
  await sql`select 1 from deliveries where id = any(${[...ids].sort()}::uuid[]) order by id for no key update`.execute(db);
}

/**
 * Records these webhooks as deleted, for the worker to delete their deliveries and attempt
 * log in batches (purgeDeletedWebhooks; migration 0009), and tells the workers to drop what
 * they queued. Deleting a webhook (or its connection) locks the webhooks FOR UPDATE (so
 * inserts of deliveries in flight finish first, and later ones skip them), calls this,
 * and deletes the rows, in one transaction: however long the webhook's history, the
 * request's work is a few rows.
 */
export async function markWebhooksDeleted(db: Db, webhookIds: readonly string[]): Promise<void> {
  if (webhookIds.length === 0) return;
  await sql`insert into deleted_webhooks (webhook_id) select unnest(${webhookIds}::uuid[]) on conflict do nothing`.execute(db);
  await notifyWebhooksChanged(db, webhookIds);
  await sql`select pg_notify(${WEBHOOKS_DELETED_CHANNEL}, '')`.execute(db);
}

/** Where workers hear that webhooks were deleted: a worker then purges what they left (at commit). */
export const WEBHOOKS_DELETED_CHANNEL = 'hookpost_webhooks_deleted';

/**
 * Deletes up to `batch` deliveries (with their attempts) of one deleted webhook, the one
 * deleted first that no other worker is purging, and its record once it has none left.
 * Returns the deliveries deleted; null when no deleted webhook is left to this worker.
 * The record stays locked (SKIP LOCKED) for the batch: workers that all heard the delete's
 * NOTIFY purge different webhooks instead of racing through the same rows. Opens its own
 * transaction, one per batch, so it takes the pool, not a transaction.
 */
export async function purgeDeletedWebhook(db: Kysely<Database>, batch: number): Promise<number | null> {
  return db.transaction().execute(async (trx) => {
    const next = await sql<{ webhook_id: string }>`
      select webhook_id from deleted_webhooks order by deleted_at, webhook_id limit 1 for update skip locked
    `.execute(trx);
    const webhookId = next.rows[0]?.webhook_id;
    if (webhookId === undefined) return null;
    const n = await deleteDeliveriesWhere(trx, sql<SqlBool>`d.id in (select id from deliveries where webhook_id = ${webhookId} limit ${batch})`);
    // None can be added: every insert of deliveries locks its webhook and skips a deleted one.
    if (n < batch) await sql`delete from deleted_webhooks where webhook_id = ${webhookId}`.execute(trx);
    return n;
  });
}

/** Where workers hear that deliveries may be due (at commit of whoever queued them). */
export const DELIVERIES_CHANNEL = 'hookpost_deliveries';

export function notifyDeliveriesDue(db: Db): Promise<unknown> {
  return sql`select pg_notify(${DELIVERIES_CHANNEL}, '')`.execute(db);
}

/** Where workers hear that webhooks stopped (paused, disabled, deleted) or changed: the payload is their ids, comma-separated. */
export const WEBHOOKS_STOPPED_CHANNEL = 'hookpost_webhooks_stopped';

/**
 * Tells every worker, at commit, that these webhooks stopped or changed: deliveries a worker
 * already claimed and queued behind its per-endpoint cap go back instead of being sent after
 * the pause, or to the old URL with the old secret (up to the cap × 8 per worker for a slow
 * endpoint); claimed again, they are read anew. Sends in flight finish.
 */
export async function notifyWebhooksChanged(db: Db, webhookIds: readonly string[]): Promise<void> {
  // A NOTIFY payload holds < 8000 bytes: 200 ids of 36 characters (and commas) each.
  for (let i = 0; i < webhookIds.length; i += 200) {
    await sql`select pg_notify(${WEBHOOKS_STOPPED_CHANNEL}, ${webhookIds.slice(i, i + 200).join(',')})`.execute(db);
  }
}

/**
 * The webhooks among `ids` (an array, or a query of ids) that still exist, locked FOR KEY
 * SHARE (in id order) until the caller's transaction ends: what a foreign key check would
 * take per inserted row, taken once per webhook. A delete of one of them waits for the
 * insert to commit, then deletes what it inserted; a webhook deleted before is left out.
 * Every statement that inserts deliveries inserts only for the webhooks this returns
 * (migration 0006). For statements of a few webhooks (test sends, replays, virtual
 * pages): the ingest, which may reach thousands, locks on its own scan (events.ts), as a
 * join of two row sets that a plan made while webhooks was small takes for one row each
 * can become a nested loop over both.
 */
export function liveWebhooks(ids: readonly string[] | RawBuilder<unknown>): RawBuilder<unknown> {
  const query = isRaw(ids) ? ids : sql`select unnest(${ids}::uuid[])`;
  return sql`select w.id, ${SENDABLE_W} as sendable from webhooks w where w.id in (${query}) order by w.id for key share`;
}

function isRaw(x: readonly string[] | RawBuilder<unknown>): x is RawBuilder<unknown> {
  return !Array.isArray(x);
}

/** Takes a webhook's pending deliveries out of the queue (paused or disabled), and tells the workers. */
export async function holdPending(db: Db, webhookIds: readonly string[]): Promise<void> {
  if (webhookIds.length === 0) return;
  await sql`update deliveries set status = 'held', updated_at = now() where webhook_id = any(${webhookIds}::uuid[]) and status = 'pending'`.execute(db);
  await notifyWebhooksChanged(db, webhookIds);
}

/** Puts a resumed webhook's held deliveries back in the queue, due now. */
export async function releaseHeld(db: Db, webhookId: string): Promise<number> {
  const r = await sql`
    update deliveries set status = 'pending', next_attempt_at = now(), updated_at = now()
    where webhook_id = ${webhookId} and status = 'held'
  `.execute(db);
  const n = Number(r.numAffectedRows ?? 0);
  if (n > 0) await notifyDeliveriesDue(db);
  return n;
}

/**
 * How far back requeueHeldOfResumed looks for resumed webhooks. A held written from a stale
 * read commits within one statement's time of the resume (DATABASE_QUERY_TIMEOUT_MS, 2 min
 * by default); the reaper runs every half lease. Ten minutes covers both with room.
 */
export const RESUME_SETTLE_MS = 10 * 60_000;

/**
 * Requeues held deliveries of webhooks that are live and were changed (resumed) in the last
 * `withinMs`. releaseHeld runs in the resume's transaction and sees only what had committed
 * when it started: a claim, a release or a retry that read the webhook as paused just before
 * can write 'held' after it, and that delivery would wait for a resume that already
 * happened. Reads the few recently changed webhooks (webhooks_updated) and their held rows
 * (deliveries_held). Returns how many it requeued.
 */
export async function requeueHeldOfResumed(db: Db, withinMs = RESUME_SETTLE_MS): Promise<number> {
  // From the webhooks: a join let the planner walk all of deliveries_held (the backlog of
  // every webhook paused for long) to find the few rows of the recently resumed ones.
  const r = await sql`
    update deliveries d set status = 'pending', next_attempt_at = now(), updated_at = now()
     where d.webhook_id = any(array(
             select w.id from webhooks w
              where w.updated_at > now() - make_interval(secs => ${withinMs / 1000}) and ${SENDABLE_W}))
       and d.status = 'held'
  `.execute(db);
  const n = Number(r.numAffectedRows ?? 0);
  if (n > 0) await notifyDeliveriesDue(db);
  return n;
}

export interface NewDelivery {
  id: string;
  workspace_id: string;
  webhook_id: string;
  kind: DeliveryKind;
  /** Written with stringifyExact: numbers parsed exactly (parseExact) are stored as they were. */
  payload: unknown;
  status: 'pending' | 'held';
}

/** Queues many deliveries (virtual pages) in as few statements as it can; wakes the workers. */
export async function insertDeliveries(db: Db, rows: readonly NewDelivery[]): Promise<void> {
  for (let i = 0; i < rows.length; i += 500) {
    const chunk = rows.slice(i, i + 500);
    const col = <K extends keyof NewDelivery>(k: K) => chunk.map((d) => d[k]);
    await sql`
      with live as materialized (${liveWebhooks([...new Set(col('webhook_id'))])})
      insert into deliveries (id, workspace_id, webhook_id, kind, payload, status)
      select r.* from unnest(${col('id')}::uuid[], ${col('workspace_id')}::uuid[], ${col('webhook_id')}::uuid[], ${col('kind')}::text[],
                             ${chunk.map((d) => stringifyExact(d.payload))}::jsonb[], ${col('status')}::text[])
        as r(id, workspace_id, webhook_id, kind, payload, status)
      where r.webhook_id in (select id from live)
    `.execute(db);
  }
  if (rows.some((d) => d.status === 'pending')) await notifyDeliveriesDue(db);
}

/** Queues a delivery outside the event path (test sends); undefined when the webhook is gone. */
export async function insertDelivery(
  db: Db,
  values: {
    id: string;
    workspaceId: string;
    webhookId: string;
    kind: DeliveryKind;
    payload?: unknown;
    status?: 'pending' | 'held' | 'delivering';
    leasedBy?: string;
    leaseMs?: number;
    /** Only for a webhook that may be sent to (active, not paused, with a URL), as its lock reads it. */
    onlyIfSendable?: boolean;
  },
): Promise<DeliveryRow | undefined> {
  const status = values.status ?? 'pending';
  const r = await sql<DeliveryRow>`
    with live as materialized (${liveWebhooks([values.webhookId])})
    insert into deliveries (id, workspace_id, webhook_id, kind, payload, status, leased_by, lease_until, attempts)
    select ${values.id}::uuid, ${values.workspaceId}::uuid, live.id, ${values.kind}, ${values.payload === undefined ? null : stringifyExact(values.payload)}::jsonb,
           ${status}, ${values.leasedBy ?? null},
           ${values.leaseMs ? sql`(now() + make_interval(secs => ${values.leaseMs / 1000}))` : null}::timestamptz, ${status === 'delivering' ? 1 : 0}
    from live ${values.onlyIfSendable ? sql`where live.sendable` : sql``}
    returning *
  `.execute(db);
  const row = r.rows[0];
  if (row?.status === 'pending') await notifyDeliveriesDue(db);
  return row;
}

/** A delivery of a webhook that exists (a deleted webhook's, not yet purged, is not found). */
export async function getDelivery(db: Db, scope: Scope, id: string): Promise<DeliveryRow | undefined> {
  // Through its webhook, in the caller's scope: a key limited to one environment does not
  // see (or replay) another environment's deliveries, and a deleted webhook's are gone.
  return db
    .selectFrom('deliveries')
    .selectAll()
    .where('workspace_id', '=', scope.workspaceId)
    .where('id', '=', id)
    .where(({ exists, selectFrom }) =>
      exists(selectFrom('webhooks').select('webhooks.id').whereRef('webhooks.id', '=', 'deliveries.webhook_id').where(inScope(scope, 'webhooks'))),
    )
    .executeTakeFirst();
}

export interface DeliveryListFilter {
  statuses?: DeliveryStatus[];
  since?: Date;
  until?: Date;
  limit: number;
  /** Keyset: strictly older than this (created_at, id). */
  before?: { createdAt: Date; id: string };
}

/** A webhook's deliveries, newest first. */
export async function listWebhookDeliveries(db: Db, workspaceId: string, webhookId: string, f: DeliveryListFilter): Promise<DeliveryRow[]> {
  return db
    .selectFrom('deliveries')
    .selectAll()
    .where('workspace_id', '=', workspaceId)
    .where('webhook_id', '=', webhookId)
    .$if(!!f.statuses?.length, (q) => q.where('status', 'in', f.statuses as DeliveryStatus[]))
    .$if(f.since !== undefined, (q) => q.where('created_at', '>=', f.since as Date))
    .$if(f.until !== undefined, (q) => q.where('created_at', '<', f.until as Date))
    .$if(f.before !== undefined, (q) =>
      q.where(sql<boolean>`(created_at, id) < (${f.before?.createdAt ?? null}::timestamptz, ${f.before?.id ?? null}::uuid)`),
    )
    .orderBy('created_at', 'desc')
    .orderBy('id', 'desc')
    .limit(f.limit)
    .execute();
}

export async function listAttempts(db: Db, deliveryId: string): Promise<DeliveryAttemptRow[]> {
  return db.selectFrom('delivery_attempts').selectAll().where('delivery_id', '=', deliveryId).orderBy('attempt').orderBy('id').execute();
}

/**
 * Replays the given deliveries; returns the ids that will be sent. A finished one (succeeded
 * or dead) gets a fresh copy (new id, so receivers that de-duplicate on webhook-id accept
 * it), pending if its webhook is deliverable, held otherwise. One still in the queue is not
 * copied, which would send it twice: a pending one (a retry waiting) is made due now and
 * keeps its id; a held one waits for its webhook's resume; one being sent is left alone.
 */
export async function replayDeliveries(db: Db, workspaceId: string, ids: readonly string[]): Promise<string[]> {
  if (ids.length === 0) return [];
  // It raises the counts of the events it copies (refs) and retention lowers them, each in the
  // order its rows come: an event shared by the two (fanned out to two webhooks) can deadlock.
  const r = await retryingDeadlocks(db, () => sql<{ id: string }>`
    with live as materialized (${liveWebhooks(sql`select webhook_id from deliveries where workspace_id = ${workspaceId} and id = any(${ids}::uuid[])`)}),
    copied as (
      insert into deliveries (id, workspace_id, webhook_id, event_id, kind, payload, status, replay_of)
      select hookpost_uuid_v7(), d.workspace_id, d.webhook_id, d.event_id, d.kind, d.payload,
             case when w.sendable then 'pending' else 'held' end, d.id
      from deliveries d join live w on w.id = d.webhook_id
      where d.workspace_id = ${workspaceId} and d.id = any(${ids}::uuid[]) and d.status in ('succeeded', 'dead')
        -- The event, locked until commit: retention (events.deleteOldEvents) cannot delete it
        -- between this read and the new delivery; one it deleted first is not replayed.
        and (d.event_id is null or exists (select 1 from events e where e.id = d.event_id for key share))
      returning id, event_id
    ),
    -- The copies refer to their events: counted (migration 0010), so retention keeps them.
    -- (Counted or not, as in deleteDeliveriesWhere: a count in progress is waited for.)
    referenced as (
      update events e set refs = e.refs + c.n
        from (select event_id, count(*)::int as n from copied where event_id is not null group by event_id) c
       where e.id = c.event_id
    ),
    rushed as (
      update deliveries d set next_attempt_at = now(), updated_at = now()
      where d.workspace_id = ${workspaceId} and d.id = any(${ids}::uuid[]) and d.status = 'pending'
        and d.webhook_id in (select id from live)
      returning d.id
    )
    select id from copied union all select id from rushed
  `.execute(db));
  if (r.rows.length > 0) await notifyDeliveriesDue(db);
  return r.rows.map((x) => x.id);
}

/**
 * Replays a webhook's failed deliveries since `since` (failedDeliveryIds, then
 * replayDeliveries) in one transaction, one replay of a webhook at a time (a transaction-level
 * advisory lock on its id, not its row lock, which would hold up its ingest meanwhile): two at
 * once both found the same deliveries not yet replayed and copied each twice, the copies
 * under different webhook-ids. Returns the ids of the copies and of the pending ones made due.
 */
export async function replayFailedDeliveries(db: Db, workspaceId: string, webhookId: string, since: Date, limit: number): Promise<string[]> {
  return inTransaction(db, async (trx) => {
    await sql`select pg_advisory_xact_lock(hashtextextended(${`hookpost.replay:${webhookId}`}, 0))`.execute(trx);
    return replayDeliveries(trx, workspaceId, await failedDeliveryIds(trx, workspaceId, webhookId, since, limit));
  });
}

/**
 * A webhook's failed deliveries since a time, for a replay: dead ones not replayed already
 * (a dead copy of one is picked instead, the latest of its line), and pending ones that have
 * already failed at least once (replayDeliveries makes those due now). At most `limit`,
 * oldest first. Replaying twice therefore sends each failed event once more, not twice.
 */
export async function failedDeliveryIds(db: Db, workspaceId: string, webhookId: string, since: Date, limit: number): Promise<string[]> {
  // Copies are made after their originals: those of deliveries since `since` are in the
  // same range of deliveries_webhook, read once (a hash anti-join, no index on replay_of).
  const r = await sql<{ id: string }>`
    select d.id from deliveries d
    where d.workspace_id = ${workspaceId} and d.webhook_id = ${webhookId} and d.created_at >= ${since}
      and (d.status = 'dead' or (d.status = 'pending' and d.attempts > 0))
      and d.id not in (select c.replay_of from deliveries c
                       where c.webhook_id = ${webhookId} and c.created_at >= ${since} and c.replay_of is not null)
    order by d.created_at, d.id
    limit ${limit}
  `.execute(db);
  return r.rows.map((x) => x.id);
}

/**
 * Deletes up to `batch` finished (succeeded or dead) deliveries made before `olderThan`,
 * with their attempt log; returns how many deliveries. Pending and held ones stay however
 * old (a webhook paused for months still gets them on resume), and a replay copies what it
 * replays, so deleting the original loses nothing. Reads the primary key from its start:
 * ids are time-ordered (firstIdAt); rows from before migration 0007 have random ids and
 * stay unless theirs happens to fall below the cutoff. The status test is on the deleted
 * row itself, so Postgres rechecks it on a row a replay or a claim changed meanwhile.
 */
export async function deleteFinishedDeliveries(db: Db, olderThan: Date, batch: number): Promise<number> {
  return deleteDeliveriesWhere(
    db,
    sql<SqlBool>`d.id in (
                   select id from deliveries
                    where id < ${firstIdAt(olderThan)}::uuid and created_at < ${olderThan} and status in ('succeeded', 'dead')
                    order by id limit ${batch})
                 and d.status in ('succeeded', 'dead') and d.created_at < ${olderThan}`,
  );
}

/** Deletes up to `batch` attempts older than `olderThan`; returns how many. */
export async function deleteOldAttempts(db: Db, olderThan: Date, batch: number): Promise<number> {
  // The batch's ids as an array: as `id in (subquery)` its plan joined the batch against the
  // whole primary key (a hash semi join: 500,000 entries read for a batch of 5,000).
  const r = await sql`
    delete from delivery_attempts where id = any(array(
      select id from delivery_attempts where created_at < ${olderThan} order by created_at limit ${batch}
    ))
  `.execute(db);
  return Number(r.numAffectedRows ?? 0);
}
