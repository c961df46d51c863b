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
