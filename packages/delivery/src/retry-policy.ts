/**
 * Where retries are decided: the schedule, its jitter, Retry-After, and when to give up.
 * Default: unified.to's documented schedule — retry n waits Fibonacci(n) minutes
 * (1, 2, 3, 5, 8, …), up to 20 retries.
 */
export interface RetryPolicy {
  /** Delay before retry n (index n-1), in seconds, before scaling and jitter. */
  scheduleSeconds: readonly number[];
  /** Fraction of the delay added or removed at random (0.1 = ±10 %). */
  jitter: number;
  /** Multiplies every delay: 1 in production, e.g. 0.001 to compress minutes into milliseconds in tests. */
  timeScale: number;
  /** Longest wait a Retry-After header can impose, in seconds (not scaled: it is the receiver's own time). */
  maxRetryAfterSeconds: number;
}

export function fibonacciMinutes(retries: number): number[] {
  const out: number[] = [];
  let [a, b] = [1, 2];
  for (let i = 0; i < retries; i++) {
    out.push(a * 60);
    [a, b] = [b, a + b];
  }
  return out;
}

/** `fibonacci` (the default) or `fibonacci:<retries>`, or explicit seconds: `5,30,300`. */
export function parseSchedule(spec: string): number[] {
  const fib = /^fibonacci(?::(\d+))?$/.exec(spec.trim());
  if (fib) return fibonacciMinutes(fib[1] ? Number(fib[1]) : 20);
  const parts = spec.split(',').map((s) => s.trim());
  const seconds = parts.map(Number);
  // Number('') is 0: an empty RETRY_SCHEDULE (or "5,,30") must not read as an immediate retry.
  if (parts.some((p) => p === '') || seconds.some((s) => !Number.isFinite(s) || s < 0)) {
    // Names the setting: it is a configuration error, not a delivery's.
    throw new Error(`Invalid configuration: RETRY_SCHEDULE must be "fibonacci[:N]" or comma-separated seconds, got ${JSON.stringify(spec)}`);
  }
  return seconds;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = {
  scheduleSeconds: fibonacciMinutes(20),
  jitter: 0.1,
  timeScale: 1,
  maxRetryAfterSeconds: 3600,
};

/** Total attempts a delivery gets: the first plus one per scheduled retry. */
export const maxAttempts = (policy: RetryPolicy) => policy.scheduleSeconds.length + 1;

/**
 * Milliseconds to wait after `attemptsMade` failed attempts, or null when the delivery
 * has had all its attempts and is dead. A Retry-After (seconds) replaces the schedule's
 * delay, bounded by `maxRetryAfterSeconds`; it is the receiver's own clock, so the
 * time scale does not apply to it.
 */
export function retryDelayMs(
  policy: RetryPolicy,
  attemptsMade: number,
  retryAfterSeconds?: number,
  random: () => number = Math.random,
): number | null {
  const base = policy.scheduleSeconds[attemptsMade - 1];
  if (base === undefined) return null;
  const seconds = base * (1 + policy.jitter * (2 * random() - 1));
  const scheduled = Math.max(0, Math.round(seconds * 1000 * policy.timeScale));
  // Retry-After is the least wait the receiver asks for (RFC 9110 §10.2.3), bounded by
  // RETRY_AFTER_MAX_SECONDS; it never shortens the schedule: a receiver answering 429 with
  // `Retry-After: 1` (or 0, or a date already past) would otherwise have all 20 retries
  // spent in seconds and the delivery dead, where the schedule spreads them over weeks.
  if (retryAfterSeconds === undefined) return scheduled;
  return Math.max(scheduled, Math.round(Math.min(retryAfterSeconds, policy.maxRetryAfterSeconds) * 1000));
}

/**
 * Retry-After as seconds: either delta-seconds or an HTTP date; undefined for anything
 * else. Date.parse alone is far too lenient ("-1", "1.5", "10,20" are dates to it, long
 * past, i.e. "retry now"): only a value that starts like an HTTP-date (a day name, in all
 * three RFC 9110 forms) is read as one.
 */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim());
  if (!/^(mon|tue|wed|thu|fri|sat|sun)[a-z]*,? /i.test(value.trim())) return undefined;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, (at - now) / 1000);
}

/** The policy from configuration (`RETRY_*` settings). */
export function retryPolicyFrom(settings: { schedule: string; jitter: number; timeScale: number; maxRetryAfterSeconds: number }): RetryPolicy {
  return {
    scheduleSeconds: parseSchedule(settings.schedule),
    jitter: settings.jitter,
    timeScale: settings.timeScale,
    maxRetryAfterSeconds: settings.maxRetryAfterSeconds,
  };
}
