import { deliveries, type Db } from '@hookpost/db';
import { FailureStreak, type Logger } from '@hookpost/runtime';

/**
 * Every `everyMs`: puts back deliveries whose worker died mid-send (dead once they have lost
 * claims past `maxAttempts`: deliveries.reclaimExpiredLeases), and requeues held
 * deliveries of webhooks resumed in the last minutes that a race left held (see
 * deliveries.requeueHeldOfResumed). Wakes the engine when either found some.
 */
export function startLeaseReaper(db: Db, logger: Logger, everyMs: number, maxAttempts: number, onReclaimed: () => void): () => void {
  const failures = new FailureStreak(logger, { failing: 'lease reaper failed', recovered: 'lease reaper works again', level: 'warn' });
  const tick = async () => {
    try {
      const reclaimed = await deliveries.reclaimExpiredLeases(db, maxAttempts);
      const requeued = await deliveries.requeueHeldOfResumed(db);
      failures.succeeded();
      if (reclaimed > 0) logger.warn({ deliveries: reclaimed }, 'reclaimed deliveries with expired leases');
      if (requeued > 0) logger.warn({ deliveries: requeued }, 'requeued deliveries held by a read that raced a resume');
      if (reclaimed + requeued > 0) onReclaimed();
    } catch (err) {
      failures.failed(err);
    }
  };
  void tick();
  const timer = setInterval(() => void tick(), everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
