import { inTransaction, newId, polling, type ConnectionSource, type Db, type PollStreamRow, type StreamMember } from '@hookpost/db';
import { SOURCE_PAGE_MAX } from '@hookpost/contract';
import { diffPage, latestUpdate, SourceError, type SourceAdapter, type SourceSettings } from '@hookpost/sources';
import type { SourceFailureClass } from '@hookpost/db';
import type { PollContext } from './context.js';
import type { RunEventStatus } from './run-events.js';
import { matchesFilters, planDeliveries } from './delivery-pages.js';
import { nextRunAt, streamIntervalMs, type RequestGate } from './schedule.js';

export type StreamOutcome =
  | { kind: 'completed' | 'failed' | 'dormant' | 'dropped' | 'stopped' }
  | { kind: 'throttled'; retryAfterMs: number }
  | { kind: 'auth-refused' }
  | { kind: 'lease-lost' };

export interface StreamRunInput {
  connection: ConnectionSource;
  adapter: SourceAdapter;
  settings: SourceSettings;
  stream: PollStreamRow;
  gate: RequestGate;
  /**
   * Extends the connection's lease; false when another worker has it now. On a transaction
   * (`q`), the row stays locked until it ends: what the transaction writes commits only while
   * this worker holds the connection.
   */
  renewLease(q?: Db): Promise<boolean>;
}

/** The connection is another worker's now: what this run would write is not written. */
class LeaseLost extends Error {}

/** Failed to write a page (deliveries, fingerprints, progress): a `dispatch` failure. */
class DispatchError extends Error {
  constructor(cause: unknown) {
    super(`writing the page failed: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}

/** A page to commit, and how to plan its deliveries for the stream's members as they are then. */
interface PlannedPage extends polling.PageCommit {
  plan(members: readonly StreamMember[]): polling.PageDelivery[];
}

/** In the page's transaction (the stream's row held): its deliveries planned for the members of now. */
async function commitPlanned(trx: Db, { plan, ...page }: PlannedPage): Promise<void> {
  await polling.commitPage(trx, { ...page, deliveries: plan(await polling.streamMembers(trx, page.streamId)) });
}

/** Fields the source may limit itself to: the union of every webhook's, unless one wants all. */
function wantedFields(members: readonly StreamMember[]): string[] | undefined {
  if (members.length === 0 || members.some((m) => !m.fields)) return undefined;
  return [...new Set(members.flatMap((m) => (m.fields ?? '').split(',').map((x) => x.trim()).filter(Boolean)))];
}

/**
 * One run of one stream: list the source page by page (from the run's cursor when
 * resuming), compare each page with the stored fingerprints, and commit the page's
 * deliveries, fingerprints and progress in one transaction. Then record the run and
 * schedule the next. Failures are classified (read / auth / dispatch / process) and
 * recorded; a 429 leaves the run to resume after the source's Retry-After.
 */
export async function runStream(ctx: PollContext, input: StreamRunInput): Promise<StreamOutcome> {
  const { db, settings: cfg } = ctx;
  const { stream, connection } = input;
  const members = await polling.streamMembers(db, stream.id);
  if (members.length === 0) {
    await polling.dropStream(db, stream.id);
    return { kind: 'dropped' };
  }
  const active = members.filter((m) => m.is_active && !m.is_paused);
  if (active.length === 0) {
    await polling.setDormant(db, stream.id);
    return { kind: 'dormant' };
  }
  const intervalMs = streamIntervalMs(active.map((m) => m.interval_minutes), cfg.defaultIntervalMinutes, cfg.minIntervalMinutes);
  const fields = wantedFields(active);
  const limit = Math.min(SOURCE_PAGE_MAX, Math.max(...members.map((m) => m.page_max_limit ?? cfg.pageSize)));

  const initialPending = members.some((m) => m.initial_sync === 'pending');
  const notify = await ctx.runEvents.listening(db, stream.workspace_id, stream.environment_id);
  const start = async (q: typeof db) => {
    const r = await polling.startRun(q, stream, cfg.overlapMs, initialPending);
    // A run resumed under its id (after a Retry-After) has been told as started already.
    if (notify && r.run_id !== stream.run_id) await ctx.runEvents.publish(q, eventBase(connection, r, 'started'));
    return r;
  };
  const run = notify || initialPending ? await inTransaction(db, start) : await start(db);
  // startRun moved pending initial syncs to running: read them back only if there were any.
  const current = initialPending ? await polling.streamMembers(db, stream.id) : members;
  const initial = new Set(current.filter((m) => m.initial_sync === 'running').map((m) => m.id));
  const runStartedAt = run.run_started_at ?? new Date();
  // This attempt's start, for the next run's time (at least half an interval after it): a run
  // resumed after a long Retry-After keeps its own, older start, and its next run was due at once.
  const startedAt = new Date();
  let cursor = run.run_cursor ?? undefined;
  /**
   * The cursors this run has listed from: one given again means the source's pages cycle
   * (or stand still), and following them would never end the run.
   */
  const listedFrom = new Set<string>(cursor === undefined ? [] : [cursor]);
  const since = run.run_since ?? undefined;
  const log = ctx.logger.child({ stream: stream.id, connection: connection.id, object_type: stream.object_type, mode: run.run_mode });
  const totals = { pages: run.run_pages, records: run.run_records, changes: run.run_changes };
  let final: polling.FinalPage | undefined;
  /** The last page, when it has something to write: committed with the run's end. */
  let lastCommit: PlannedPage | undefined;
  /** First in every write's transaction: the stream's row, then the connection's lease (false: lost). */
  const holding = async (trx: Db): Promise<boolean> => {
    await polling.lockStream(trx, stream.id);
    return input.renewLease(trx);
  };
  const leaseLost = (): StreamOutcome => {
    log.warn('lost the connection lease mid-run; another worker resumes the run');
    return { kind: 'lease-lost' };
  };

  try {
    for (;;) {
      await input.gate.pass(ctx.signal);
      if (ctx.signal.aborted) return { kind: 'stopped' };
      // Before every request, not only after a page that is not the last: a connection of many
      // one-page streams (or slow ones) outlived its lease, and another worker ran it at once.
      if (!(await input.renewLease())) return leaseLost();
      const page = await input.adapter.list(
        input.settings,
        { objectType: stream.object_type, updatedGte: since, cursor, limit, fields, filters: stream.filters },
        ctx.signal,
      );
      const records = page.records.filter((r) => matchesFilters(r, stream.filters));
      const seen = await polling.loadFingerprints(db, stream.id, records.map((r) => r.id));
      // Never seen and changed before the stream began: history, not news. Judged with the
      // overlap, as the listing is: the baseline is the database's clock, the record's time
      // the source's, and a source a little behind had its first changes taken for history.
      const diff = diffPage(records, seen, new Date(stream.baseline_at.getTime() - cfg.overlapMs));
      // The mark goes by every record the source listed, filtered out here or not: by the kept
      // ones only, a source that ignores the filter, with nothing matching yet, kept the mark
      // empty and every run listed the whole object type.
      const pageMax = latestUpdate(page.records);
      const lastPage = page.nextCursor === null;
      // Planned again in the page's transaction, with the stream's members as they are then:
      // a webhook that joined during the run gets the changes found after it came, and one that
      // moved to another stream (or was paused) gets no more of this one's.
      const plan = (now: readonly StreamMember[]) =>
        planDeliveries({ members: now, initial, changes: diff.changes, records, lastPage, defaultPageSize: cfg.pageSize, newId, runStartedAt });
      const deliveries = plan(current);
      totals.pages += 1;
      totals.records += records.length;
      totals.changes += diff.changes.length;
      ctx.stats.pages += 1;
      ctx.stats.changes += diff.changes.length;
      ctx.stats.deliveries += deliveries.length;
      if (lastPage && deliveries.length === 0 && diff.store.length === 0) {
        // Nothing to write: the page's progress goes with the run's completion.
        final = { pages: 1, records: records.length, changes: 0, maxUpdatedAt: pageMax };
        break;
      }
      const commit: PlannedPage = {
        plan,
        streamId: stream.id,
        deliveries,
        records: diff.store,
        nextCursor: page.nextCursor,
        recordsSeen: records.length,
        changes: diff.changes.length,
        maxUpdatedAt: pageMax,
      };
      if (lastPage) {
        // With the run's end, in one transaction: committed alone, a crash (or a failed
        // statement) before the end left the run without a cursor, and it started over,
        // sending a whole initial sync again.
        lastCommit = commit;
        break;
      }
      try {
        await inTransaction(db, async (trx) => {
          if (!(await holding(trx))) throw new LeaseLost();
          await commitPlanned(trx, commit);
        });
      } catch (err) {
        if (err instanceof LeaseLost) return leaseLost();
        throw new DispatchError(err);
      }
      if (page.nextCursor !== null && listedFrom.has(page.nextCursor)) {
        throw new SourceError(
          'process',
          page.nextCursor === cursor
            ? 'the source answered with the cursor it was given (no progress)'
            : `the source gave a cursor it had already given in this run, after ${totals.pages} pages (its pages cycle)`,
        );
      }
      cursor = page.nextCursor ?? undefined;
      if (cursor !== undefined) listedFrom.add(cursor);
    }

    const next = nextRunAt({ scheduledAt: run.run_scheduled_at, startedAt, intervalMs, jitter: cfg.jitter });
    const endInitialSync = initial.size > 0;
    const restoreHealth = members.some((m) => m.unhealthy_reason?.startsWith('source:')) ? { deliveryFailureThreshold: cfg.deliveryFailureThreshold } : undefined;
    try {
      await inTransaction(db, async (trx) => {
        if (!(await holding(trx))) throw new LeaseLost();
        if (lastCommit) await commitPlanned(trx, lastCommit);
        await polling.completeRun(trx, stream.id, next, { final, endInitialSync, restoreHealth });
        if (!connection.is_healthy) await polling.setConnectionHealth(trx, connection.id, true);
        if (notify) await ctx.runEvents.publish(trx, { ...eventBase(connection, run, 'completed'), ...finished(totals) });
      });
    } catch (err) {
      if (err instanceof LeaseLost) return leaseLost();
      throw lastCommit ? new DispatchError(err) : err;
    }
    ctx.stats.runs += 1;
    log.debug({ ...totals, next_run_at: next }, 'run completed');
    return { kind: 'completed' };
  } catch (err) {
    if (ctx.signal.aborted) return { kind: 'stopped' };
    if (err instanceof SourceError && err.kind === 'throttled') {
      ctx.stats.throttled += 1;
      const retryAfterMs = err.retryAfterMs ?? 60_000;
      log.info({ retry_after_ms: err.retryAfterMs, status: err.status }, 'source asked to wait; the run resumes after Retry-After');
      if (notify) {
        // Told, not kept: a lost notice costs no change, and the wait must not fail the run.
        const notice = { ...eventBase(connection, run, 'rate_limited'), ...runStats(totals), retryAfterSeconds: Math.ceil(retryAfterMs / 1000) };
        await inTransaction(db, (trx) => ctx.runEvents.publish(trx, notice)).catch((e: unknown) => log.warn({ err: e }, 'could not publish sync_job_run:rate_limited'));
      }
      return { kind: 'throttled', retryAfterMs };
    }
    const errorClass: SourceFailureClass = err instanceof SourceError ? (err.kind as SourceFailureClass) : 'dispatch';
    const message = err instanceof Error ? err.message : String(err);
    ctx.stats.failedRuns += 1;
    const next = nextRunAt({ scheduledAt: run.run_scheduled_at, startedAt, intervalMs, jitter: cfg.jitter });
    const health = await inTransaction(db, async (trx) => {
      // The connection another worker's now: its run state is not this run's to end.
      if (!(await holding(trx))) return null;
      const h = await polling.failRun(trx, stream.id, {
        errorClass,
        error: message,
        nextRunAt: next,
        // A bad answer may come from a bad cursor: start the listing over. Otherwise resume.
        resume: errorClass !== 'process',
        countsAgainstWebhooks: errorClass !== 'auth',
        failureThreshold: cfg.failureThreshold,
        pauseAfterSeconds: cfg.pauseAfterSeconds,
      });
      if (errorClass === 'auth') await polling.setConnectionHealth(trx, connection.id, false);
      if (notify) await ctx.runEvents.publish(trx, { ...eventBase(connection, run, 'failed'), ...finished(totals), error: `${errorClass}: ${message}` });
      return h;
    });
    if (health === null) return leaseLost();
    log.warn({ error_class: errorClass, err: message, ...health }, 'run failed');
    return errorClass === 'auth' ? { kind: 'auth-refused' } : { kind: 'failed' };
  }
}

function eventBase(connection: ConnectionSource, run: PollStreamRow, status: RunEventStatus) {
  return {
    workspaceId: run.workspace_id,
    environmentId: run.environment_id,
    connectionId: connection.id,
    streamId: run.id,
    runId: run.run_id,
    objectType: run.object_type,
    status,
    startedAt: run.run_started_at,
  };
}

function runStats(t: { pages: number; records: number; changes: number }) {
  return { pages: t.pages, recordsSeen: t.records, changes: t.changes };
}

function finished(t: { pages: number; records: number; changes: number }) {
  return { finishedAt: new Date(), ...runStats(t) };
}
