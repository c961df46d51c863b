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

/** Spaces requests to one source: at most `perSecond`, across runs (starts from the last request). */
export class RequestGate {
  private last: number;
  private readonly spacingMs: number;

  constructor(perSecond: number, lastRequestAt: Date | null) {
    this.spacingMs = 1000 / perSecond;
    this.last = lastRequestAt?.getTime() ?? 0;
  }

  async pass(signal?: AbortSignal): Promise<void> {
    const wait = this.last + this.spacingMs - Date.now();
    if (wait > 0) {
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(t);
          signal?.removeEventListener('abort', done);
          resolve();
        };
        const t = setTimeout(done, wait);
        signal?.addEventListener('abort', done, { once: true });
      });
    }
    this.last = Date.now();
  }

  get lastRequestAt(): Date | null {
    return this.last > 0 ? new Date(this.last) : null;
  }
}
