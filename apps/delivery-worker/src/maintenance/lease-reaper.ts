import { deliveries, type Db } from '@hookpost/db';
import { FailureStreak, type Logger } from '@hookpost/runtime';

/** Puts back deliveries whose worker died mid-send, every `everyMs`; wakes the engine when it did. */
export function startLeaseReaper(db: Db, logger: Logger, everyMs: number, onReclaimed: () => void): () => void {
  const failures = new FailureStreak(logger, { failing: 'lease reaper failed', recovered: 'lease reaper works again', level: 'warn' });
  const tick = async () => {
    try {
      const n = await deliveries.reclaimExpiredLeases(db);
      failures.succeeded();
      if (n > 0) {
        logger.warn({ deliveries: n }, 'reclaimed deliveries with expired leases');
        onReclaimed();
      }
    } catch (err) {
      failures.failed(err);
    }
  };
  void tick();
  const timer = setInterval(() => void tick(), everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
