import { createHash } from 'node:crypto';
import { Kysely, PostgresDialect, type Transaction } from 'kysely';
import pg from 'pg';
import type { Database } from './schema.js';

// int8 (counts, bigserial) as JS numbers: every value we store fits in 2^53.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number.parseInt(v, 10));

/** Anything a repository function can run on: the database or an open transaction. */
export type Db = Kysely<Database> | Transaction<Database>;

/** SQL that starts with this marker runs as a named prepared statement (planned once per connection). */
export const PREPARE = '/* prepare */ ';

const statementNames = new Map<string, string>();
function statementName(text: string): string {
  let name = statementNames.get(text);
  if (!name) {
    name = `hp_${createHash('sha1').update(text).digest('hex').slice(0, 20)}`;
    if (statementNames.size > 1000) statementNames.clear();
    statementNames.set(text, name);
  }
  return name;
}

/** How a statement that got no answer fails (closeIfUnanswered); a connection error (isConnectionError). */
const NO_ANSWER = 'no answer from Postgres within';

/**
 * TCP keep-alive probes on idle sessions, so a peer that vanished is noticed (after 10 s
 * idle, where the kernel's default is 2 h; probes then follow its interval). For every
 * pool and for connections opened outside one (the worker's LISTEN connection).
 */
export const TCP_KEEP_ALIVE = { keepAlive: true, keepAliveInitialDelayMillis: 10_000 } as const;

/**
 * A pg client that prepares the hot queries: planning the ingest and claim statements
 * costs more than running them, so each connection plans them once.
 */
class PreparingClient extends pg.Client {
  constructor(config?: string | pg.ClientConfig) {
    super(config);
    // pg-pool listens for errors only while a client is idle. A checked-out client whose
    // session ends between two queries (Postgres restarted, the session terminated, in a
    // transaction or just before a query) emits 'error' with no listener, which crashed the
    // process. The next query on it fails and tells its caller; released, the pool drops it.
    this.on('error', () => undefined);
  }

  /** A statement unanswered this long closes the connection (createDb's `answerTimeoutMs`). */
  protected readonly answerTimeoutMs: number | undefined = undefined;

  override query(...args: unknown[]): never {
    const [text, values] = args;
    const result: unknown =
      typeof text === 'string' && text.startsWith(PREPARE) && (values === undefined || Array.isArray(values)) && args.length <= 2
        ? super.query({ name: statementName(text), text, values: values as unknown[] | undefined })
        : (super.query as (...a: unknown[]) => unknown)(...args);
    if (this.answerTimeoutMs !== undefined && result instanceof Promise) this.closeIfUnanswered(result, this.answerTimeoutMs);
    return result as never;
  }

  /**
   * A session whose peer vanished with a statement in flight (a half-open TCP connection)
   * raises nothing until TCP gives up, ~15 minutes on Linux; keep-alive does not apply
   * while data waits to be acknowledged. Closing the socket fails the statement (and any
   * queued behind it) at once, and the pool drops the client when it is released.
   */
  private closeIfUnanswered(result: Promise<unknown>, ms: number): void {
    const timer = setTimeout(() => this.connection.stream.destroy(new Error(`${NO_ANSWER} ${ms} ms; connection closed`)), ms);
    const clear = () => clearTimeout(timer);
    result.then(clear, clear);
  }
}

/** A PreparingClient whose statements close the connection when unanswered for `ms`. */
function preparingClientWithTimeout(ms: number): typeof PreparingClient {
  return class extends PreparingClient {
    protected override readonly answerTimeoutMs = ms;
  };
}

/**
 * Planner settings for every session Hookpost opens (`createDb`; a pool's own `settings`
 * may override them).
 *
 * No sequential scans where an index serves, because of foreign keys. Postgres checks each
 * row's reference with a query it plans once per session and keeps. Planned while the
 * referenced table was small and analyzed, that query is a sequential scan, and it stays
 * one as the table grows, until an ANALYZE of that table invalidates it; autovacuum may be
 * minutes away from one while it vacuums the queue. After a workspace bulk creates virtual
 * webhooks, the poller would scan every stream once per fingerprint written (poll_records →
 * poll_streams); in a reproduction on PG 15, 2,000 child rows against a 20,000-row parent
 * took 1,384 ms instead of 28 ms. The same holds for webhooks → connections, poll_runs →
 * poll_streams, idempotency keys → workspaces. With sequential scans off the check is
 * planned on the parent's primary key whatever its size; a query with no index to use
 * still scans. `apps/delivery-worker/test/foreign-key-plans.test.ts` shows both.
 */
const SESSION_SETTINGS: Readonly<Record<string, string>> = {
  enable_seqscan: 'off',
};

/**
 * Planner settings for sessions that work the delivery queue (the worker's pool), on top
 * of SESSION_SETTINGS (which `createDb` applies to every pool).
 *
 * No bitmap scans: the queue's partial indexes hold many dead entries between vacuums
 * (every claim and completion leaves one), and a bitmap scan reads them all, where an
 * ordered index scan stops at its LIMIT and marks the dead entries it passes. With
 * statistics from when the table was small, the planner otherwise chose bitmap scan +
 * sort for the claim (~10 ms per claim of 128 at a 35,000-row backlog).
 *
 * Prepared statements (the claim, the completion, the target lookup) always run their
 * generic plan: planning them cost as much as running them for small batches. No
 * sequential scans where an index serves, so those plans stay on the indexes however the
 * table's size and statistics move. Every query of the worker has an index to use.
 */
export const QUEUE_SESSION_SETTINGS: Readonly<Record<string, string>> = {
  enable_bitmapscan: 'off',
  plan_cache_mode: 'force_generic_plan',
  // Short statements over a few hundred rows: compiling them never pays, and a plan whose
  // estimates went wrong (a function's default of 1,000 rows a call, say) was JIT-compiled
  // at every execution, ~0.6 s a claim.
  jit: 'off',
};

export interface CreateDbOptions {
  connectionString: string;
  poolMax?: number;
  applicationName?: string;
  /**
   * false: this pool's commits do not wait for the WAL flush (`synchronous_commit=off`).
   * For writes that may be lost in a Postgres crash without harm (they are redone);
   * a statement that must be durable runs `set local synchronous_commit = on` first.
   */
  synchronousCommit?: boolean;
  /** Server settings for every session of this pool (`-c name=value`). */
  settings?: Record<string, string>;
  /**
   * A statement unanswered this long closes its connection and fails (see
   * PreparingClient.closeIfUnanswered; DATABASE_QUERY_TIMEOUT_MS). Unset: none, for
   * sessions whose statements may run long (migrations).
   */
  answerTimeoutMs?: number;
  /** How long a session lives before the pool replaces it (when idle); default SESSION_MAX_LIFETIME_S. */
  maxLifetimeSeconds?: number;
  onQueryError?: (error: unknown, sql: string) => void;
}

/**
 * How long a pooled session lives: its prepared statements keep the plan of their first
 * execution (the queue's sessions force generic plans) until an ANALYZE of a table they read.
 * Made on a young install, over a webhook or two and an empty queue, where every index looks
 * alike, a completion read every delivery of its webhook to find the few it completes, and
 * the target lookup every webhook (`apps/delivery-worker/test/queue-plans.test.ts`); without
 * an ANALYZE (autovacuum off, or a table far from its threshold) that plan stayed. A new
 * session plans against the tables' current size. Reconnecting every couple of minutes costs
 * a few milliseconds of one connection's time.
 */
export const SESSION_MAX_LIFETIME_S = 120;

export function createDb(options: CreateDbOptions): Kysely<Database> {
  const settings = { ...SESSION_SETTINGS, ...options.settings, ...(options.synchronousCommit === false ? { synchronous_commit: 'off' } : {}) };
  const flags = Object.entries(settings).map(([name, value]) => `-c ${name}=${value}`);
  const pool = new pg.Pool({
    Client: options.answerTimeoutMs === undefined ? PreparingClient : preparingClientWithTimeout(options.answerTimeoutMs),
    connectionString: options.connectionString,
    max: options.poolMax ?? 10,
    application_name: options.applicationName ?? 'hookpost',
    idleTimeoutMillis: 30_000,
    // A connection attempt (or a wait for a free client) that takes this long fails: a
    // server gone without a RST would otherwise hold it for minutes.
    connectionTimeoutMillis: 30_000,
    maxLifetimeSeconds: options.maxLifetimeSeconds ?? SESSION_MAX_LIFETIME_S,
    ...TCP_KEEP_ALIVE,
    ...(flags.length > 0 ? { options: flags.join(' ') } : {}),
  });
  // An idle client erroring (server restart) must not crash the process.
  pool.on('error', () => undefined);
  return new Kysely<Database>({
    dialect: new PostgresDialect({ pool }),
    log: options.onQueryError
      ? (event) => {
          if (event.level === 'error') options.onQueryError?.(event.error, event.query.sql);
        }
      : undefined,
  });
}

/** SQLSTATEs of a session that ended or could not start (class 08, admin/crash shutdown, no slot). */
const CONNECTION_SQLSTATES = /^(08...|57P0[123]|53300)$/;
/** What pg and Node say when the socket went away, or a dead client is used again. */
const CONNECTION_MESSAGES = new RegExp(`^(Connection terminated|Client has encountered a connection error|timeout exceeded when trying to connect|${NO_ANSWER})`);
const CONNECTION_ERRNOS = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);

/**
 * Whether `err` means the database could not be reached or dropped the session, rather
 * than refusing the statement: a statement that failed so did not commit, or (if it was
 * a commit in flight) its outcome is unknown.
 */
export function isConnectionError(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const { code, message } = err as { code?: unknown; message?: unknown };
  if (typeof code === 'string' && (CONNECTION_SQLSTATES.test(code) || CONNECTION_ERRNOS.has(code))) return true;
  return typeof message === 'string' && CONNECTION_MESSAGES.test(message);
}

/**
 * Whether the database refused the statement for a state of its own that passes: read-only
 * (25006: a standby after a failover, before the client reconnects to the new primary),
 * disk full (53100), out of memory (53200). Nothing was written; retrying later is right.
 */
export function isDatabaseRefusingWrites(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === '25006' || code === '53100' || code === '53200';
}

/** How many times inTransaction runs a transaction the database rolled back to break a deadlock. */
const TRANSACTION_TRIES = 3;

/** Whether the database rolled the statement's transaction back to break a deadlock (40P01). */
export function isDeadlock(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === '40P01';
}

/**
 * Runs `fn` in a transaction, or directly when `db` already is one (the caller's transaction
 * decides). A transaction of its own that the database chose to break a deadlock (40P01: rolled
 * back whole) is run again, up to 3 times: a webhook's PATCH in the API and a poll page's
 * commit in the worker take the same rows in opposite orders (the webhook then its stream,
 * the stream then its webhooks), and one of the two was a 500 or a failed run. `fn` must
 * therefore only write to the database (nothing it did outside is undone).
 */
export async function inTransaction<T>(db: Db, fn: (trx: Transaction<Database>) => Promise<T>): Promise<T> {
  if (db.isTransaction) return fn(db as Transaction<Database>);
  for (let attempt = 1; ; attempt++) {
    try {
      return await db.transaction().execute(fn);
    } catch (err) {
      if (attempt >= TRANSACTION_TRIES || !isDeadlock(err)) throw err;
    }
  }
}

/**
 * Runs one statement (`fn`), again if the database chose it to break a deadlock (40P01: it
 * rolled back whole), up to 3 times. Inside a transaction it runs once: the transaction is
 * lost with it and its caller decides.
 */
export async function retryingDeadlocks<T>(db: Db, fn: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (db.isTransaction || attempt >= TRANSACTION_TRIES || !isDeadlock(err)) throw err;
    }
  }
}
