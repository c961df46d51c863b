import type { SendResult } from './sender.js';

/**
 * What one attempt means: any 2xx is success; 410 Gone disables the webhook; every
 * other answer (or no answer) is a failure to retry on the schedule.
 */
export type Outcome = 'success' | 'gone' | 'failure';

export function outcomeOf(result: SendResult): Outcome {
  if (result.statusCode === undefined) return 'failure';
  if (result.statusCode >= 200 && result.statusCode < 300) return 'success';
  if (result.statusCode === 410) return 'gone';
  return 'failure';
}

/** The short label stored with an attempt: `success`, `http_500`, `timeout`, … */
export function attemptLabel(result: SendResult): string {
  if (result.failure) return result.failure.class;
  const code = result.statusCode ?? 0;
  return code >= 200 && code < 300 ? 'success' : `http_${code}`;
}

/**
 * Whether an attempt says its endpoint is struggling: no answer (timeout, refused), a 5xx,
 * 429 or 408. That is what halves the endpoint's share of sends in flight. Other answers (a
 * 4xx, 410) come back at once and concern one webhook (its credentials, its tenant): the
 * other webhooks of that endpoint keep their pace.
 */
export function strainsEndpoint(statusCode: number | null | undefined): boolean {
  if (statusCode === null || statusCode === undefined) return true;
  return statusCode >= 500 || statusCode === 429 || statusCode === 408;
}
