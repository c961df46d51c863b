import { deliveries, polling, type Db } from '@hookpost/db';
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

/** Deletes attempts older than the retention age, in batches. */
export function pruneAttempts(db: Db, olderThanMs: number): Promise<number> {
  const cutoff = new Date(Date.now() - olderThanMs);
  return pruneInBatches((batch) => deliveries.deleteOldAttempts(db, cutoff, batch));
}

/** Deletes finished poll runs older than the retention age, in batches. */
export function prunePollRuns(db: Db, olderThanMs: number): Promise<number> {
  const cutoff = new Date(Date.now() - olderThanMs);
  return pruneInBatches((batch) => polling.deleteOldRuns(db, cutoff, batch));
}

export function startRetention(db: Db, logger: Logger, retention: { attemptsMs: number; pollRunsMs: number }, everyMs: number): () => void {
  let running = false;
  const tick = async () => {
    if (running) return;
    running = true;
    try {
      const n = await pruneAttempts(db, retention.attemptsMs);
      if (n > 0) logger.info({ deleted: n }, 'pruned old delivery attempts');
      const runs = await prunePollRuns(db, retention.pollRunsMs);
      if (runs > 0) logger.info({ deleted: runs }, 'pruned old poll runs');
    } catch (err) {
      logger.warn({ err }, 'attempt retention failed');
    } finally {
      running = false;
    }
  };
  const timer = setInterval(() => void tick(), everyMs);
  timer.unref();
  void tick();
  return () => clearInterval(timer);
}
