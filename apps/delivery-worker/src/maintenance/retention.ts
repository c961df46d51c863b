import { deliveries, events, polling, type Db } from '@hookpost/db';
import type { Logger } from '@hookpost/runtime';

/** Calls `deleteBatch` until a batch comes back short, so no single statement holds locks for long. */
async function pruneInBatches(deleteBatch: (batch: number) => Promise<number>, batch = 5000): Promise<number> {
  let total = 0;
  for (;;) {
    const n = await deleteBatch(batch);
    total += n;
    if (n < batch) return total;
  }
}

/** Deletes old events no delivery refers to, a batch of old events at a time (in id order, each batch after the last). */
async function pruneOldEvents(db: Db, olderThan: Date, batch = 5000): Promise<number> {
  let total = 0;
  let after: string | null = null;
  for (;;) {
    const b: events.EventRetentionBatch = await events.deleteOldEvents(db, olderThan, batch, after);
    total += b.deleted;
    if (b.scanned < batch || b.lastId === null) return total;
    after = b.lastId;
  }
}

/** Deletes the deliveries and attempts of deleted webhooks, a batch at a time, then their records. */
async function purgeDeletedWebhooks(db: Db, batch = 5000): Promise<number> {
  let total = 0;
  for (;;) {
    const n = await deliveries.purgeDeletedWebhook(db, batch);
    if (n === null) return total;
    total += n;
  }
}

/** How old each kind of row may get, in ms. */
export interface RetentionAges {
  attemptsMs: number;
  /** Finished deliveries (with their attempts), then events no delivery refers to. */
  deliveriesMs: number;
  idempotencyKeysMs: number;
  pollRunsMs: number;
}

/** What one pass deleted, by kind. */
export type RetentionPass = Record<'ofDeletedWebhooks' | 'attempts' | 'deliveries' | 'events' | 'idempotencyKeys' | 'pollRuns', number>;

/**
 * One retention pass: what deleted webhooks left, then every kind of row older than its
 * age, in batches. `now` is a
 * parameter so a test can run a pass as if days had gone by.
 */
export async function pruneOnce(db: Db, ages: RetentionAges, now = Date.now()): Promise<RetentionPass> {
  const before = (ms: number) => new Date(now - ms);
  return {
    ofDeletedWebhooks: await purgeDeletedWebhooks(db),
    deliveries: await pruneInBatches((batch) => deliveries.deleteFinishedDeliveries(db, before(ages.deliveriesMs), batch)),
    events: await pruneOldEvents(db, before(ages.deliveriesMs)),
    attempts: await pruneInBatches((batch) => deliveries.deleteOldAttempts(db, before(ages.attemptsMs), batch)),
    idempotencyKeys: await pruneInBatches((batch) => events.deleteOldIdempotencyKeys(db, before(ages.idempotencyKeysMs), batch)),
    pollRuns: await pruneInBatches((batch) => polling.deleteOldRuns(db, before(ages.pollRunsMs), batch)),
  };
}

export interface Retention {
  stop(): void;
  /** Purges what deleted webhooks left now (a delete's NOTIFY), not at the next pass. */
  purgeDeleted(): void;
}

/**
 * Runs a retention pass every `everyMs` (and at start), and a purge of deleted webhooks'
 * rows when asked; one job at a time, and a request made while one runs runs after it.
 */
export function startRetention(db: Db, logger: Logger, ages: RetentionAges, everyMs: number): Retention {
  let running: Promise<void> | undefined;
  let purgeAgain = false;
  const run = (job: () => Promise<Partial<RetentionPass>>) => {
    const go = async () => {
      try {
        const deleted = await job();
        if (Object.values(deleted).some((n) => n > 0)) logger.info({ deleted }, 'retention deleted rows');
      } catch (err) {
        logger.warn({ err }, 'retention failed');
      } finally {
        running = undefined;
        if (purgeAgain) {
          purgeAgain = false;
          run(purge);
        }
      }
    };
    running = go();
  };
  const purge = async () => ({ ofDeletedWebhooks: await purgeDeletedWebhooks(db) });
  const timer = setInterval(() => {
    if (!running) run(() => pruneOnce(db, ages));
  }, everyMs);
  timer.unref();
  run(() => pruneOnce(db, ages));
  return {
    stop: () => clearInterval(timer),
    purgeDeleted: () => {
      if (running) purgeAgain = true;
      else run(purge);
    },
  };
}
