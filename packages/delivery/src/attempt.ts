import type { AttemptRecord, Completion } from '@hookpost/db';
import { attemptLabel, outcomeOf, type Outcome } from './outcome.js';
import { loggableHeaders, renderDelivery, type DeliveryTarget, type OutgoingMessage } from './payloads.js';
import { maxAttempts, retryDelayMs, type RetryPolicy } from './retry-policy.js';
import type { Sender } from './sender.js';

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
  const outcome = outcomeOf(result);
  const error = result.failure ? `${result.failure.class}: ${result.failure.message}` : outcome === 'success' ? null : `HTTP ${result.statusCode}`;
  let completion: Completion;
  if (outcome === 'success') {
    completion = { id: message.deliveryId, status: 'succeeded', nextAttemptAt: null, statusCode: result.statusCode ?? null, error: null };
  } else {
    const delay = outcome === 'gone' || attemptNumber >= maxAttempts(policy) ? null : retryDelayMs(policy, attemptNumber, result.retryAfterSeconds);
    completion = {
      id: message.deliveryId,
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
      deliveryId: message.deliveryId,
      webhookId: target.id,
      attempt: attemptNumber,
      startedAt,
      durationMs: result.durationMs,
      statusCode: result.statusCode ?? null,
      outcome: attemptLabel(result),
      error,
      responseSnippet: result.responseSnippet ?? null,
      requestHeaders: loggableHeaders(rendered.headers),
    },
  };
}
