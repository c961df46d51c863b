import type { AttemptRecord, Completion, HealthTally } from '@hookpost/db';
import { attemptLabel, outcomeOf, type Outcome } from './outcome.js';
import { loggableHeaders, renderDelivery, type DeliveryTarget, type OutgoingMessage } from './payloads.js';
import { maxAttempts, retryDelayMs, type RetryPolicy } from './retry-policy.js';
import type { Sender, SendResult } from './sender.js';

export interface AttemptResult {
  outcome: Outcome;
  completion: Completion;
  attempt: AttemptRecord;
}

/**
 * One attempt, start to finish: render and sign, send, then decide what happens to the
 * delivery — succeeded, retried at the policy's next time, or dead (last attempt, or
 * the endpoint answered 410 Gone).
 */
export async function performAttempt(
  sender: Sender,
  target: DeliveryTarget,
  message: OutgoingMessage,
  attemptNumber: number,
  policy: RetryPolicy,
): Promise<AttemptResult> {
  const startedAt = new Date();
  const rendered = renderDelivery(target, message, Math.floor(startedAt.getTime() / 1000));
  const result = await sender.send(target.hookUrl, rendered);
  return settle(message.deliveryId, target.id, attemptNumber, policy, startedAt, result, loggableHeaders(rendered.headers));
}

/**
 * An attempt that could not be sent: its webhook's secret could not be decrypted (a damaged
 * row; a wrong HOOKPOST_ENCRYPTION_KEY, which opens no secret, makes the engine hand its claims
 * back instead). It fails like an endpoint that does not answer:
 * logged, retried on the schedule, counted against the webhook's health (which pauses it
 * and holds the rest) — and the deliveries of other webhooks go on.
 */
export function unsentAttempt(deliveryId: string, webhookId: string, attemptNumber: number, policy: RetryPolicy, reason: string): AttemptResult {
  return settle(deliveryId, webhookId, attemptNumber, policy, new Date(), { durationMs: 0, failure: { class: 'secret_unreadable', message: reason } }, {});
}

/** What an attempt's result means for its delivery: succeeded, retried at the policy's next time, or dead. */
function settle(
  deliveryId: string,
  webhookId: string,
  attemptNumber: number,
  policy: RetryPolicy,
  startedAt: Date,
  result: SendResult,
  requestHeaders: Record<string, string>,
): AttemptResult {
  const outcome = outcomeOf(result);
  const error = result.failure ? `${result.failure.class}: ${result.failure.message}` : outcome === 'success' ? null : `HTTP ${result.statusCode}`;
  let completion: Completion;
  if (outcome === 'success') {
    completion = { id: deliveryId, attempt: attemptNumber, status: 'succeeded', nextAttemptAt: null, statusCode: result.statusCode ?? null, error: null };
  } else {
    const delay = outcome === 'gone' || attemptNumber >= maxAttempts(policy) ? null : retryDelayMs(policy, attemptNumber, result.retryAfterSeconds);
    completion = {
      id: deliveryId,
      attempt: attemptNumber,
      status: delay === null ? 'dead' : 'pending',
      nextAttemptAt: delay === null ? null : new Date(Date.now() + delay),
      statusCode: result.statusCode ?? null,
      error,
    };
  }
  return {
    outcome,
    completion,
    attempt: {
      deliveryId,
      webhookId,
      attempt: attemptNumber,
      startedAt,
      durationMs: result.durationMs,
      statusCode: result.statusCode ?? null,
      outcome: attemptLabel(result),
      error,
      responseSnippet: result.responseSnippet ?? null,
      requestHeaders,
    },
  };
}

/**
 * Whether a result counts against its webhook's health: a failure or a 410. A 429 (too many
 * requests) does not: the endpoint is up and asks for fewer (retried later, its share
 * halved), as with the poller's sources.
 */
export function troublesHealth(r: AttemptResult): boolean {
  return r.outcome !== 'success' && r.attempt.statusCode !== 429;
}

/** What a batch of results says about each webhook's health, in batch order. */
export function tallyHealth(results: readonly AttemptResult[]): Map<string, HealthTally> {
  const tallies = new Map<string, HealthTally>();
  for (const r of results) {
    const t = tallies.get(r.attempt.webhookId) ?? { webhookId: r.attempt.webhookId, failures: 0, recovered: false, gone: false };
    if (r.outcome === 'success') {
      t.recovered = true;
      t.failures = 0;
    } else if (!troublesHealth(r)) {
      // A 429: neither.
    } else if (r.outcome === 'gone') {
      t.gone = true;
    } else {
      t.failures++;
    }
    tallies.set(t.webhookId, t);
  }
  return tallies;
}

/** Tallies with a failure or a 410: what must go through webhookHealth.applyHealth. */
export function troubledTallies(tallies: Map<string, HealthTally>): HealthTally[] {
  return [...tallies.values()].filter((t) => t.failures > 0 || t.gone);
}
