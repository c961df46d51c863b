import { deliveries, inTransaction, webhookHealth, webhooks, type Db, type HealthPolicy } from '@hookpost/db';
import { tallyHealth, troubledTallies, troublesHealth, type AttemptResult } from './attempt.js';

export interface RecordedBatch {
  /** Results whose completion counted: written now, or by a lost earlier try of this batch. */
  counted: AttemptResult[];
  /** Webhooks this write paused or disabled: their queued deliveries must not be sent. */
  stopped: string[];
}

/**
 * Writes a batch of finished attempts (the worker's completion writer, the API's test send):
 * the deliveries' new states, the attempt log and webhook health, all or nothing. A batch of
 * successes is one statement; one with a failure or a 410 is a transaction that also applies
 * health (webhookHealth.applyHealth), for the completions that counted only.
 *
 * `again`: the batch was written before and the answer lost (it may have committed). The
 * rows are locked first, so a lost try still running on the server (waiting for a lock when
 * its session was reset) has ended before this one looks; the completions it settled count,
 * but their health is not applied twice (it was, in the same transaction as their settling).
 */
export async function recordResults(db: Db, leasedBy: string, batch: readonly AttemptResult[], health: HealthPolicy, again = false): Promise<RecordedBatch> {
  const completions = batch.map((r) => r.completion);
  const attempts = batch.map((r) => r.attempt);
  // Not the batch's tally: a failure followed by a late success tallies as healed, but the
  // late one may not count.
  if (!again && !batch.some(troublesHealth)) {
    const { updated } = await deliveries.completeBatch(db, leasedBy, completions, attempts);
    return { counted: batch.filter((r) => updated.has(r.completion.id)), stopped: [] };
  }
  return inTransaction(db, async (trx) => {
    // Webhooks, then deliveries: the order a webhook's PATCH (and applyHealth's hold) takes them.
    await webhooks.lockWebhooks(trx, attempts.map((a) => a.webhookId));
    if (again) await deliveries.lockDeliveries(trx, completions.map((c) => c.id));
    const { updated, settled } = await deliveries.completeBatch(trx, leasedBy, completions, attempts, again);
    const current = batch.filter((r) => updated.has(r.completion.id));
    const stopped = await webhookHealth.applyHealth(trx, troubledTallies(tallyHealth(current)), health);
    return { counted: batch.filter((r) => updated.has(r.completion.id) || settled.has(r.completion.id)), stopped };
  });
}
