/**
 * When a stream runs next: one interval after it was due (a steady cadence), never
 * sooner than half an interval after this run started (a late run does not cause a
 * burst of catch-up runs), spread by ± `jitter` of the interval (at most 30 s) so
 * webhooks created together do not poll together forever.
 */
export function nextRunAt(o: { scheduledAt: Date | null; startedAt: Date; intervalMs: number; jitter: number; random?: () => number }): Date {
  const random = o.random ?? Math.random;
  const base = Math.max((o.scheduledAt ?? o.startedAt).getTime() + o.intervalMs, o.startedAt.getTime() + o.intervalMs / 2);
  const spread = Math.min(o.intervalMs * o.jitter, 30_000);
  return new Date(Math.round(base + (random() * 2 - 1) * spread));
}

/** A stream polls as often as its most eager active webhook asks. */
export function streamIntervalMs(intervals: readonly (number | null)[], defaultMinutes: number, minMinutes: number): number {
  const minutes = intervals.length === 0 ? defaultMinutes : Math.min(...intervals.map((m) => m ?? defaultMinutes));
  return Math.max(minutes, minMinutes) * 60_000;
}

/**
 * Keeps requests to one source to `perSecond` on average (a token bucket holding one
 * second's worth, at least one): a connection's streams due together go out at once,
 * a long run is spaced. Across runs it assumes the bucket was empty at the last request.
 */
export class RequestGate {
  private tokens: number;
  private refilledAt: number;
  private lastAt: number;
  private readonly perMs: number;
  private readonly burst: number;

  constructor(perSecond: number, lastRequestAt: Date | null) {
    this.perMs = perSecond / 1000;
    this.burst = Math.max(1, Math.floor(perSecond));
    const now = Date.now();
    // A time ahead of this clock (written by a worker whose clock runs ahead) counts as now:
    // taken as given, the bucket started deep below empty and held the connection for as long.
    this.lastAt = Math.min(lastRequestAt?.getTime() ?? 0, now);
    this.tokens = lastRequestAt ? Math.min(this.burst, (now - this.lastAt) * this.perMs) : this.burst;
    this.refilledAt = now;
  }

  private refill(): void {
    const now = Date.now();
    this.tokens = Math.min(this.burst, this.tokens + (now - this.refilledAt) * this.perMs);
    this.refilledAt = now;
  }

  async pass(signal?: AbortSignal): Promise<void> {
    this.refill();
    if (this.tokens < 1) {
      const wait = Math.ceil((1 - this.tokens) / this.perMs);
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(t);
          signal?.removeEventListener('abort', done);
          resolve();
        };
        const t = setTimeout(done, wait);
        signal?.addEventListener('abort', done, { once: true });
      });
      this.refill();
    }
    this.tokens = Math.max(0, this.tokens - 1);
    this.lastAt = Date.now();
  }

  get lastRequestAt(): Date | null {
    return this.lastAt > 0 ? new Date(this.lastAt) : null;
  }
}
