import { recordResults, type AttemptResult } from '@hookpost/delivery';
import type { Db, HealthPolicy } from '@hookpost/db';
import { FailureStreak, type Logger } from '@hookpost/runtime';

/**
 * Finished attempts are written in batches (group commit, recordResults): one statement of
 * deliveries' states and attempts per flush (a transaction with the health changes when
 * something failed), instead of three writes per delivery. A flush starts when `maxBatch`
 * results wait or `maxDelayMs` passed.
 */
export class CompletionWriter {
  private pending: AttemptResult[] = [];
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();
  /** Set at shutdown: no batch is retried past it. */
  private deadline = Number.POSITIVE_INFINITY;
  private readonly failures: FailureStreak;

  constructor(
    private readonly db: Db,
    private readonly workerId: string,
    private readonly health: HealthPolicy,
    private readonly logger: Logger,
    private readonly hooks: {
      /** Webhooks just paused or disabled: their queued deliveries must not be sent. */
      onStopped: (webhookIds: string[]) => void;
      /** Earliest retry time written, to wake the claimer then. */
      onRetryAt: (at: Date) => void;
    },
    /**
     * How long a batch is retried while the database is away: the claims' lease. Past it the
     * deliveries are someone's again (re-sent, with the same webhook-id) and the batch is
     * dropped with an error log naming what it held.
     */
    private readonly retryForMs: number,
    private readonly maxBatch = 500,
    private readonly maxDelayMs = 5,
  ) {
    this.failures = new FailureStreak(logger, { failing: 'could not record attempts; retrying', recovered: 'attempts are recorded again' });
  }

  add(result: AttemptResult): void {
    this.pending.push(result);
    if (this.pending.length >= this.maxBatch) this.flushSoon(0);
    else if (!this.timer) this.flushSoon(this.maxDelayMs);
  }

  private flushSoon(delay: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, delay);
  }

  /** Writes everything added so far; resolves when it is committed (or given up). */
  flush(): Promise<void> {
    this.flushing = this.flushing.then(() => this.write());
    return this.flushing;
  }

  /** At shutdown: batches still failing are retried until `at` at the latest, then given up. */
  giveUpBy(at: number): void {
    this.deadline = Math.min(this.deadline, at);
  }

  private async write(): Promise<void> {
    if (this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    const giveUpAt = Date.now() + this.retryForMs;
    for (let tries = 1; ; tries++) {
      try {
        // A late completion of an earlier claim (its lease ran out, the delivery was claimed
        // again) is logged, but says nothing about health or retries: the later claim will.
        const { counted, stopped } = await recordResults(this.db, this.workerId, batch, this.health, tries > 1);
        let earliestRetry: Date | undefined;
        for (const r of counted) {
          const at = r.completion.nextAttemptAt;
          if (at && (!earliestRetry || at < earliestRetry)) earliestRetry = at;
        }
        if (stopped.length > 0) this.hooks.onStopped(stopped);
        if (earliestRetry) this.hooks.onRetryAt(earliestRetry);
        this.failures.succeeded();
        return;
      } catch (err) {
        // Deliveries stay leased while this is retried; past their lease they are claimed and
        // sent again, so the batch (their attempt log entries with it) is given up then.
        this.failures.failed(err, { tries, results: batch.length });
        const wait = Math.min(200 * tries, 2_000);
        if (Date.now() + wait >= Math.min(giveUpAt, this.deadline)) {
          this.logger.error(
            { err, tries, results: batch.length, deliveries: batch.slice(0, 20).map((r) => r.completion.id) },
            'gave up recording a batch of attempts: their deliveries will be sent again when their lease ends, and these attempts are missing from the attempt log',
          );
          return;
        }
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  }
}
