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

/** How old each kind of row may get, in ms. */
export interface RetentionAges {
  attemptsMs: number;
  /** Finished deliveries (with their attempts), then events no delivery refers to. */
  deliveriesMs: number;
  idempotencyKeysMs: number;
  pollRunsMs: number;
}

/** What one pass deleted, by kind. */
export type RetentionPass = Record<'attempts' | 'deliveries' | 'events' | 'idempotencyKeys' | 'pollRuns', number>;

/**
 * One retention pass: every kind of row older than its age, in batches. `now` is a
 * parameter so a test can run a pass as if days had gone by.
 */
export async function pruneOnce(db: Db, ages: RetentionAges, now = Date.now()): Promise<RetentionPass> {
  const before = (ms: number) => new Date(now - ms);
  return {
    deliveries: await pruneInBatches((batch) => deliveries.deleteFinishedDeliveries(db, before(ages.deliveriesMs), batch)),
    events: await pruneInBatches((batch) => events.deleteOldEvents(db, before(ages.deliveriesMs), batch)),
    attempts: await pruneInBatches((batch) => deliveries.deleteOldAttempts(db, before(ages.attemptsMs), batch)),
    idempotencyKeys: await pruneInBatches((batch) => events.deleteOldIdempotencyKeys(db, before(ages.idempotencyKeysMs), batch)),
    pollRuns: await pruneInBatches((batch) => polling.deleteOldRuns(db, before(ages.pollRunsMs), batch)),
  };
}

/** Runs a retention pass every `everyMs` (and at start); one at a time. */
export function startRetention(db: Db, logger: Logger, ages: RetentionAges, everyMs: number): () => void {
  let running = false;
  const tick = async () => {
    if (running) return;
    running = true;
    try {
      const deleted = await pruneOnce(db, ages);
      if (Object.values(deleted).some((n) => n > 0)) logger.info({ deleted }, 'retention pass deleted old rows');
    } catch (err) {
      logger.warn({ err }, 'retention pass failed');
    } finally {
      running = false;
    }
  };
  const timer = setInterval(() => void tick(), everyMs);
  timer.unref();
  void tick();
  return () => clearInterval(timer);
}
