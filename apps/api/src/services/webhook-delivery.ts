import { generateWebhookSecret } from '@hookpost/contract';
import { deliveries, inTransaction, newId, webhooks, type Db, type Scope, type WebhookWithEnv } from '@hookpost/db';
import { checkHookUrl, messageOf, performAttempt, recordResults, retryPolicyFrom, TargetLoader, unsentAttempt, type AttemptResult, type StoredPayload } from '@hookpost/delivery';
import { ApiError } from '../http/errors.js';
import type { ApiContext } from './deps.js';

/** A webhook of the caller's workspace, whatever face created it, or 404. */
export async function requireWebhook(db: Db, scope: Scope, id: string): Promise<WebhookWithEnv> {
  const row = await webhooks.getWebhook(db, scope, id);
  if (!row) throw ApiError.notFound('webhook');
  return row;
}

/** Refuses hook URLs that point at private, loopback, link-local or metadata addresses (unless allow-listed). */
export async function requireAllowedUrl(ctx: ApiContext, field: string, url: string | null | undefined): Promise<void> {
  if (!url) return;
  const check = await checkHookUrl(url, ctx.addressPolicy);
  if (!check.ok) throw ApiError.invalidField(field, check.reason);
}

/** After a pause/disable the queue holds its deliveries; after a resume/enable it sends them. */
export async function syncQueueWithState(db: Db, row: Pick<WebhookWithEnv, 'id' | 'is_active' | 'is_paused'>): Promise<void> {
  if (row.is_active && !row.is_paused) await deliveries.releaseHeld(db, row.id);
  else await deliveries.holdPending(db, [row.id]);
}

export function secretsOf(ctx: ApiContext, row: WebhookWithEnv) {
  const expires = row.previous_secret_expires_at;
  const previousLive = row.previous_secret_encrypted && expires && expires.getTime() > Date.now();
  return {
    secret: ctx.secrets.open(row.secret_encrypted),
    ...(previousLive && row.previous_secret_encrypted && expires
      ? { previous_secret: ctx.secrets.open(row.previous_secret_encrypted), previous_secret_expires_at: expires.toISOString() }
      : {}),
  };
}

/** New secret now; the old one keeps signing (Standard Webhooks, several signatures) until the overlap ends. */
export async function rotateSecret(ctx: ApiContext, scope: Scope, id: string, overlapSeconds: number): Promise<WebhookWithEnv> {
  // Read back in the same transaction, the row still locked by the update: the answer is this
  // rotation's secret, not a concurrent one's.
  return inTransaction(ctx.db, async (trx) => {
    if (!(await webhooks.rotateWebhookSecret(trx, scope, id, ctx.secrets.seal(generateWebhookSecret()), overlapSeconds))) throw ApiError.notFound('webhook');
    return requireWebhook(trx, scope, id);
  });
}

const TEST_PAYLOAD: StoredPayload = { type: 'test', unified_type: 'VIRTUAL', records: [], payload: { foo: 'bar' } };

/** Queues a test delivery for the worker (unified.to trigger). */
export async function queueTestDelivery(ctx: ApiContext, row: WebhookWithEnv): Promise<void> {
  if (!row.hook_url) return;
  await deliveries.insertDelivery(ctx.db, {
    id: newId(),
    workspaceId: row.workspace_id,
    webhookId: row.id,
    kind: 'test',
    payload: TEST_PAYLOAD,
    status: row.is_active && !row.is_paused ? 'pending' : 'held',
  });
}

/**
 * Truto's POST /webhook/test: sends a test event now, from the API, and answers with
 * whether the endpoint took it. The delivery and its attempt are logged like any other;
 * a failure is retried on the schedule by the worker. An inactive webhook (made so, paused
 * for failing, or disabled by a 410) receives nothing, tests included: a 409. Sent anyway,
 * it reached an endpoint that had answered 410 Gone, and a failed test stayed held and
 * went out when the webhook was activated again.
 */
export async function sendTestNow(ctx: ApiContext, row: WebhookWithEnv): Promise<boolean> {
  if (!row.is_active || row.is_paused) {
    throw new ApiError('conflict', 'the webhook is inactive and receives nothing, tests included; activate it first (PATCH /webhook/{id} is_active: true)', 'body.id');
  }
  const id = newId();
  const leaseMs = ctx.config.delivery.leaseMs;
  const leasedBy = `api-test-${id}`;
  const queued = await deliveries.insertDelivery(ctx.db, {
    id,
    workspaceId: row.workspace_id,
    webhookId: row.id,
    kind: 'test',
    payload: TEST_PAYLOAD,
    status: 'delivering',
    leasedBy,
    leaseMs,
    // Read with the webhook's lock: a pause or disable committed since the check above wins.
    onlyIfSendable: true,
  });
  if (!queued) return false; // deleted, paused or disabled meanwhile
  const policy = retryPolicyFrom(ctx.config.retry);
  const loaded = await new TargetLoader(ctx.db, ctx.secrets).load([row.id]);
  const target = loaded.targets.get(row.id);
  const unreadable = loaded.unreadable.get(row.id);
  let result: AttemptResult;
  if (target) {
    const claimed = { id, webhook_id: row.id, event_id: null, kind: 'test' as const, payload_json: JSON.stringify(TEST_PAYLOAD), attempts: 1, created_at: new Date(), event_type: null, event_object_type: null, event_data_json: null, event_has_raw: null, event_created_at: null, webhook_updated_at: row.updated_at };
    result = await performAttempt(ctx.sender, target, messageOf(claimed), 1, policy);
  } else if (unreadable !== undefined) {
    // As the worker does: logged, retried on the schedule, counted against health.
    result = unsentAttempt(id, row.id, 1, policy, unreadable);
  } else {
    // Its URL went meanwhile: back to the queue, as if never claimed.
    await deliveries.releaseClaims(ctx.db, leasedBy, [{ id, attempts: 1 }]);
    return false;
  }
  // Recorded as the worker records its sends (recordResults): the attempt counts for the
  // webhook's health (a 410 disables it; before, a test answered 410 left it active), and a
  // retry wakes the workers (before, nothing did: it waited for an idle worker's next check,
  // up to 30 s).
  const { counted } = await recordResults(ctx.db, leasedBy, [result], ctx.config.health);
  if (counted.length > 0 && result.completion.status === 'pending') await deliveries.notifyDeliveriesDue(ctx.db);
  return result.outcome === 'success';
}

