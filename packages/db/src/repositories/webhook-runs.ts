import { sql } from 'kysely';
import type { Db } from '../client.js';
import type { RunTrigger, WebhookRunRow } from '../schema.js';

/** Records that a run should happen now; the worker's poller picks up requested runs. */
export async function requestRun(db: Db, webhookId: string, trigger: RunTrigger): Promise<WebhookRunRow> {
  const row = await db
    .insertInto('webhook_runs')
    .values({ webhook_id: webhookId, trigger, status: 'requested' })
    .returningAll()
    .executeTakeFirstOrThrow();
  await sql`select pg_notify('hookpost_runs', ${webhookId})`.execute(db);
  return row;
}

/** The newest `perWebhook` runs of each webhook, newest first. */
export async function recentRuns(db: Db, webhookIds: readonly string[], perWebhook = 10): Promise<Map<string, WebhookRunRow[]>> {
  const byWebhook = new Map<string, WebhookRunRow[]>();
  if (webhookIds.length === 0) return byWebhook;
  const rows = await db
    .selectFrom((eb) =>
      eb
        .selectFrom('webhook_runs')
        .selectAll()
        .select(sql<number>`row_number() over (partition by webhook_id order by requested_at desc, id desc)`.as('rn'))
        .where('webhook_id', 'in', webhookIds)
        .as('r'),
    )
    .selectAll()
    .where('rn', '<=', perWebhook)
    .orderBy('requested_at', 'desc')
    .execute();
  for (const { rn: _rn, ...row } of rows) {
    const list = byWebhook.get(row.webhook_id) ?? [];
    list.push(row);
    byWebhook.set(row.webhook_id, list);
  }
  return byWebhook;
}
