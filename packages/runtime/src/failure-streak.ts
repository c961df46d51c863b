import type { Logger } from 'pino';

export interface FailureStreakOptions {
  /** Logged with the first failure of a streak (and, marked as repeated, every `everyMs` after). */
  failing: string;
  /** Logged at info when the operation works again after failing. */
  recovered: string;
  /** Level of the failure lines. Default `error`. */
  level?: 'error' | 'warn';
  /** At most one line per this long while the failures go on. Default 30 s. */
  everyMs?: number;
  now?: () => number;
}

/**
 * Logs an operation that fails again and again while its cause lasts (Postgres restarting,
 * the network gone): the first failure in full, then at most one line per `everyMs` with the
 * count and how long it has been failing, and one line when it works again. A loop that
 * retries every second would otherwise write 3,600 identical errors an hour of an outage.
 */
export class FailureStreak {
  private failures = 0;
  private since = 0;
  private lastLogged = 0;
  private readonly everyMs: number;
  private readonly now: () => number;

  constructor(
    private readonly logger: Logger,
    private readonly o: FailureStreakOptions,
  ) {
    this.everyMs = o.everyMs ?? 30_000;
    this.now = o.now ?? Date.now;
  }

  /** Whether the last attempt failed. */
  get failing(): boolean {
    return this.failures > 0;
  }

  failed(err: unknown, fields: Record<string, unknown> = {}): void {
    const now = this.now();
    this.failures++;
    if (this.failures === 1) {
      this.since = now;
      this.lastLogged = now;
      this.logger[this.o.level ?? 'error']({ err, ...fields }, this.o.failing);
      return;
    }
    if (now - this.lastLogged < this.everyMs) return;
    this.lastLogged = now;
    this.logger[this.o.level ?? 'error']({ err, ...fields, failures: this.failures, failingForMs: now - this.since }, `${this.o.failing} (still failing)`);
  }

  succeeded(fields: Record<string, unknown> = {}): void {
    if (this.failures === 0) return;
    this.logger.info({ ...fields, failures: this.failures, failedForMs: this.now() - this.since }, this.o.recovered);
    this.failures = 0;
  }
}
