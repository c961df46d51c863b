import { deliveries, type Db } from '@hookpost/db';
import type { Logger } from '@hookpost/runtime';

/** Puts back deliveries whose worker died mid-send, every `everyMs`; wakes the engine when it did. */
export function startLeaseReaper(db: Db, logger: Logger, everyMs: number, onReclaimed: () => void): () => void {
  const tick = async () => {
    try {
      const n = await deliveries.reclaimExpiredLeases(db);
      if (n > 0) {
        logger.warn({ deliveries: n }, 'reclaimed deliveries with expired leases');
        onReclaimed();
      }
    } catch (err) {
      logger.warn({ err }, 'lease reaper failed');
    }
  };
  void tick();
  const timer = setInterval(() => void tick(), everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
