import type { ClaimedConnection } from '@hookpost/db';
import { polling } from '@hookpost/db';
import { FailureStreak } from '@hookpost/runtime';
import type { PollContext } from './context.js';
import { runConnection } from './connection-run.js';

/** Longest sleep with nothing due: a cheap re-check, in case a notification was missed. */
const IDLE_RECHECK_MS = 30_000;
/** Sleep when something is due but could not be claimed (held by a claim in progress). */
const CONTENDED_MS = 100;

/**
 * The poller: claims connections with due streams (up to `concurrency` at once, SKIP
 * LOCKED so workers share), runs each, and otherwise sleeps until the next one is due
 * or a `hookpost_runs` notification (new webhook, trigger, resume) wakes it.
 */
export class Poller {
  private readonly running = new Set<Promise<void>>();
  private stopped = false;
  private loop: Promise<void> | undefined;
  private wakeUp: (() => void) | undefined;
  private pendingWake = false;
  private readonly loopFailures: FailureStreak;

  constructor(
    private readonly ctx: PollContext,
    private readonly concurrency: number,
  ) {
    this.loopFailures = new FailureStreak(ctx.logger, { failing: 'poller loop error; retrying in 1 s', recovered: 'poller loop works again', level: 'warn' });
  }

  start(): void {
    this.loop ??= this.run();
  }

  wake(): void {
    this.pendingWake = true;
    this.wakeUp?.();
  }

  get inFlight(): number {
    return this.running.size;
  }

  private sleep(ms: number): Promise<void> {
    if (this.pendingWake || this.stopped) {
      this.pendingWake = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wakeUp = undefined;
        this.pendingWake = false;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wakeUp = done;
    });
  }

  private launch(claim: ClaimedConnection): void {
    const p: Promise<void> = runConnection(this.ctx, claim)
      .catch((err: unknown) => this.ctx.logger.error({ err, connection: claim.connection_id }, 'poll failed'))
      .finally(() => {
        this.running.delete(p);
        this.wake();
      });
    this.running.add(p);
  }

  private async run(): Promise<void> {
    const { db, workerId, settings } = this.ctx;
    while (!this.stopped) {
      try {
        const free = this.concurrency - this.running.size;
        if (free <= 0) {
          await this.sleep(IDLE_RECHECK_MS);
          continue;
        }
        const claimed = await polling.claimConnections(db, workerId, free, settings.leaseMs);
        this.loopFailures.succeeded();
        for (const c of claimed) this.launch(c);
        if (claimed.length === free) continue;
        const at = await polling.nextClaimableAt(db);
        const wait = at === null ? IDLE_RECHECK_MS : Math.min(IDLE_RECHECK_MS, at.getTime() - Date.now());
        await this.sleep(wait > 0 ? wait : claimed.length > 0 ? 0 : CONTENDED_MS);
      } catch (err) {
        if (this.stopped) break;
        this.loopFailures.failed(err);
        await this.sleep(1000);
      }
    }
  }

  /** Stops claiming; runs in flight end at their next request (their state resumes elsewhere). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake();
    await this.loop;
    await Promise.allSettled([...this.running]);
  }
}
