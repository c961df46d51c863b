import { sql } from 'kysely';
import type { Db } from '../client.js';
import { holdPending } from './deliveries.js';
import { lockWebhooks } from './webhooks.js';

/**
 * A webhook's outcomes in one batch of attempts that had a failure or a 410 (batches
 * of pure successes are settled by completeBatch).
 */
export interface HealthTally {
  webhookId: string;
  /** Failed attempts after the batch's last success (or all of them, with no success). */
  failures: number;
  /** The batch had a success: the streak before it is over. */
  recovered: boolean;
  /** A 410 Gone: the receiver asked to stop. */
  gone: boolean;
}

export interface HealthPolicy {
  failureThreshold: number;
  pauseAfterSeconds: number;
}

/**
 * Applies failures to webhook health. Consecutive failures reaching the threshold
 * mark a webhook unhealthy (`is_healthy=false`, `checked_at`); failing with no success
 * for `pauseAfterSeconds` pauses it (its queue is held); a success earlier in the batch
 * restarts the streak; a 410 disables it. Returns the webhooks paused or disabled now.
 * Must run in a transaction (it locks the webhooks it changes).
 */
export async function applyHealth(db: Db, tallies: readonly HealthTally[], policy: HealthPolicy): Promise<string[]> {
  const stopped: string[] = [];
  if (tallies.length === 0) return stopped;
  await lockWebhooks(db, tallies.map((t) => t.webhookId));
  const gone = tallies.filter((t) => t.gone).map((t) => t.webhookId);
  if (gone.length > 0) {
    await sql`
      update webhooks set is_active = false, disabled_reason = 'gone', checked_at = now(), updated_at = now()
      where id = any(${gone}::uuid[])
    `.execute(db);
    stopped.push(...gone);
  }
  const failing = tallies.filter((t) => t.failures > 0 && !t.gone);
  if (failing.length > 0) {
    const ids = failing.map((t) => t.webhookId);
    const r = await sql<{ id: string; paused_now: boolean }>`
      with before as (select id, is_paused from webhooks where id = any(${ids}::uuid[])),
      changed as (
        update webhooks w
           set consecutive_failures = s.streak,
               failing_since = s.since,
               -- A success earlier in the batch ends the endpoint's streak, not its source's mark.
               is_healthy = (w.is_healthy or (f.reset and coalesce(w.unhealthy_reason not like 'source:%', true))) and s.streak < ${policy.failureThreshold},
               checked_at = case when s.streak >= ${policy.failureThreshold} then now() else w.checked_at end,
               is_paused = w.is_paused or (
                 s.streak >= ${policy.failureThreshold} and s.since <= now() - make_interval(secs => ${policy.pauseAfterSeconds})),
               updated_at = now()
          from unnest(${ids}::uuid[], ${failing.map((t) => t.failures)}::int[], ${failing.map((t) => t.recovered)}::bool[]) as f(id, n, reset),
               webhooks cur,
               lateral (select case when f.reset then 0 else cur.consecutive_failures end + f.n as streak,
                               case when f.reset then now() else coalesce(cur.failing_since, now()) end as since) s
         where w.id = f.id and cur.id = f.id
        returning w.id, w.is_paused
      )
      select changed.id, (changed.is_paused and not before.is_paused) as paused_now
      from changed join before on before.id = changed.id
    `.execute(db);
    stopped.push(...r.rows.filter((x) => x.paused_now).map((x) => x.id));
  }
  await holdPending(db, stopped);
  return stopped;
}

