import { randomUUID } from 'node:crypto';
import { deliveries, type Claim, type ClaimedDelivery, type ClaimRef, type Db, type HealthPolicy } from '@hookpost/db';
import { messageOf, performAttempt, strainsEndpoint, unsentAttempt, type DeliveryTarget, type LoadedTargets, type RetryPolicy, type Sender, type StoredPayload, type TargetLoader } from '@hookpost/delivery';
import { FailureStreak, type Logger } from '@hookpost/runtime';
import { CompletionWriter } from './completions.js';

export interface EngineOptions {
  db: Db;
  sender: Sender;
  targets: TargetLoader;
  retry: RetryPolicy;
  health: HealthPolicy;
  logger: Logger;
  /** Deliveries in flight (sending or waiting for their endpoint's turn) in this process. */
  concurrency: number;
  /**
   * Sends in flight per endpoint (endpointOf: one URL, whatever number of webhooks point at
   * it): a slow endpoint never holds more than this.
   */
  perEndpoint: number;
  /** Webhooks of full endpoints a claim leaves out by id (beyond: postponed releases). Default 1,000. */
  claimExcludeMax?: number;
  batchSize: number;
  leaseMs: number;
  /** The sender's total timeout: a send must end inside its claim's lease. */
  timeoutMs: number;
  /** How long an idle worker sleeps when nothing is due and nothing notifies it. */
  idleCheckMs?: number;
}

interface Queued {
  delivery: ClaimedDelivery;
  target: DeliveryTarget;
  /**
   * When this worker asked for the claim (Date.now()). The lease runs from the claim
   * statement's start on the database's clock, a moment later: counted from here, the
   * lease this worker relies on ends before the real one, however long the claim waited
   * (for locks, say) or its answer took.
   */
  claimedAt: number;
}

/** One endpoint's sends in this process: those in flight and those waiting for its cap. */
interface EndpointLane {
  active: number;
  waiting: Queued[];
  /** The webhooks whose deliveries came to this lane: left out of claims while it is full. */
  webhooks: Set<string>;
  /**
   * Its webhooks were left out of the last claim: when it has room again, the due times of
   * theirs that the next-due lookup skipped are asked for again.
   */
  excluded: boolean;
}

/** How an endpoint has been answering lately: decides how many sends it may have in flight. */
interface EndpointHealth {
  /** Exponentially weighted mean attempt duration, ms. */
  latencyMs: number;
  /** Sends it may have in flight now. */
  cap: number;
}

/** An endpoint answering faster than this on average counts as fast. */
const FAST_ENDPOINT_MS = 250;
/**
 * A fast endpoint's cap grows up to this many times the per-endpoint cap (256 sends in
 * flight at the default 32). One webhook receiving a whole product's events is common,
 * and for a fast endpoint in-flight sends, not its speed, bound the rate: draining one
 * webhook's backlog went from ~7,500/s to ~8,100/s when this was raised from 4 to 8.
 * A failure halves the cap and a slow answer sends it back to the base.
 */
const FAST_ENDPOINT_FACTOR = 8;

/**
 * Deliveries for an endpoint whose lane is full go back not due before about when the lane
 * will have drained (its queue over its cap, times its mean answer time), within these.
 */
const POSTPONE_MIN_MS = 50;
const POSTPONE_MAX_MS = 60_000;

/** How long an initial sync's last page waits for the pages before it: at least, and at most before it asks again. */
const LAST_PAGE_WAIT_MIN_MS = 200;
const LAST_PAGE_WAIT_MAX_MS = 10 * 60_000;

/** The longest delay a Node timer takes as given (a longer one fires after 1 ms). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * The delivery loop of one worker process. Claims due deliveries in batches (SKIP
 * LOCKED + lease), sends them with a per-endpoint cap so one slow or dead endpoint
 * cannot hold up others, and hands results to the batched completion writer.
 * Sleeps on LISTEN/NOTIFY (or until the next retry falls due) when there is no work.
 */
export class DeliveryEngine {
  readonly workerId = `worker-${randomUUID()}`;
  /** By endpoint (DeliveryTarget.endpoint), as is `endpoints`. */
  private readonly lanes = new Map<string, EndpointLane>();
  /** The endpoint each webhook's deliveries last went to (a URL change moves a webhook to another lane). */
  private readonly laneOfWebhook = new Map<string, string>();
  private readonly endpoints = new Map<string, EndpointHealth>();
  private readonly completions: CompletionWriter;
  private inFlight = 0;
  private queued = 0;
  private stopping = false;
  private loop: Promise<void> | undefined;
  private wakeSignal: (() => void) | undefined;
  private notified = false;
  /**
   * Whether due work may be left that the last claim did not take (a full batch, a
   * webhook cut at its share, claims handed back). When false, a finished send does not
   * start another claim: it would find nothing and cost two statements per delivery
   * at a steady trickle. NOTIFY, retry timers and the lease reaper still wake the loop.
   */
  private moreDue = true;
  /** Where the next claim's stepping past left-out webhooks goes on (deliveries.Claim.stepAfter). */
  private stepAfter: string | null = null;
  /** Where the next claim's look past a webhook dominating the due front goes on (deliveries.Claim.fairAfter). */
  private fairAfter: string | null = null;
  /** The last claim left out saturated webhooks: a finished send may free one. */
  private excludedLast = false;
  /** The loop sleeps until sends finish and make room. */
  private waitingForRoom = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryAt = Number.POSITIVE_INFINITY;
  /**
   * After the next claim, ask the database when the next delivery falls due (only the
   * earliest due time is kept in a timer; a lookup that left a full endpoint out missed its).
   */
  private askNextDue = false;
  private idleResolvers: (() => void)[] = [];
  /**
   * Webhooks stopped (NOTIFY) while a claim was on its way here: the claim may have read
   * them live just before the stop committed, and its deliveries are not in a lane yet
   * for webhooksStopped to find. Set from the claim's start to the end of its dispatch.
   */
  private stoppedDuringClaim: Set<string> | undefined;
  /** The LISTEN connection came back while a claim was in flight (listenGap): all of it goes back. */
  private gapDuringClaim = false;
  readonly stats = { claimed: 0, sent: 0, succeeded: 0, failed: 0, released: 0 };
  private readonly claimFailures: FailureStreak;
  private readonly keyFailures: FailureStreak;
  /** While no secret decrypts: how long the loop waits before claiming again (0: it does not). */
  private keyPauseMs = 0;

  constructor(private readonly o: EngineOptions) {
    this.claimFailures = new FailureStreak(o.logger, { failing: 'claim failed; retrying shortly', recovered: 'claims work again' });
    this.keyFailures = new FailureStreak(o.logger, {
      failing: 'no webhook secret decrypts with HOOKPOST_ENCRYPTION_KEY; handing deliveries back (is it the key they were stored with?)',
      recovered: 'webhook secrets decrypt again',
    });
    this.completions = new CompletionWriter(
      o.db,
      this.workerId,
      o.health,
      o.logger,
      {
        onStopped: (ids) => this.dropQueued(ids),
        onRetryAt: (at) => this.wakeAt(at),
      },
      o.leaseMs,
    );
  }

  start(): void {
    this.loop ??= this.run().catch((err: unknown) => {
      this.o.logger.fatal({ err }, 'delivery loop crashed');
      throw err;
    });
  }

  /**
   * These webhooks were paused, disabled, deleted or changed (NOTIFY from whoever did it,
   * possibly another process): their deliveries queued here, claimed but not yet sent, go
   * back, and so do those of a claim in flight; claimed again, they are sent as the webhook
   * is then (or held).
   */
  webhooksStopped(webhookIds: string[]): void {
    for (const id of webhookIds) this.stoppedDuringClaim?.add(id);
    this.dropQueued(webhookIds);
  }

  /**
   * The LISTEN connection is back after a gap: change notices sent meanwhile were lost, so
   * any webhook may have been paused, deleted or changed. Every delivery queued here (claimed,
   * not yet sending) goes back, to be claimed again and read as its webhook is now, and so
   * does all of a claim in flight (the stopped-during-claim set cannot say which). Sends in
   * flight finish. (At the first connection nothing is queued.) Before, a pause made while the
   * connection was down let up to twice the endpoint's cap of queued deliveries still go out.
   */
  listenGap(): void {
    const webhooks = new Set<string>();
    for (const lane of this.lanes.values()) for (const q of lane.waiting) webhooks.add(q.delivery.webhook_id);
    if (this.stoppedDuringClaim) this.gapDuringClaim = true;
    if (webhooks.size > 0) this.webhooksStopped([...webhooks]);
  }

  /** New work may be due (NOTIFY). */
  wake(): void {
    this.notified = true;
    this.wakeSignal?.();
  }

  /** Wake up at `at` (a retry falls due). */
  wakeAt(at: Date): void {
    const when = at.getTime();
    if (when >= this.retryAt) return;
    this.retryAt = when;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    // Node fires a timer longer than 2^31-1 ms (24.8 days) at once: a retry due further
    // out (a long RETRY_SCHEDULE or Retry-After) would have the loop claim, find nothing
    // and re-arm the same timer every millisecond. Wake at most that far ahead; the
    // loop re-arms from the database then.
    this.retryTimer = setTimeout(() => {
      this.retryAt = Number.POSITIVE_INFINITY;
      // Later retries asked for while this timer was set were not scheduled (only the
      // earliest is): after the claim this wakes, ask the database for the next one.
      this.askNextDue = true;
      this.wake();
    }, Math.min(MAX_TIMER_MS, Math.max(0, when - Date.now())));
  }

  private sleep(ms: number): Promise<void> {
    if (this.stopping) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wakeSignal = done;
    }).finally(() => (this.wakeSignal = undefined));
  }

  /** Waits `ms`, or until stop; unlike sleep, a NOTIFY does not end it. */
  private async pause(ms: number): Promise<void> {
    const end = Date.now() + ms;
    while (!this.stopping && Date.now() < end) await new Promise((r) => setTimeout(r, Math.min(100, end - Date.now())));
  }

  private get room(): number {
    return this.o.concurrency - this.inFlight - this.queued;
  }

  private async run(): Promise<void> {
    const idleMs = this.o.idleCheckMs ?? 30_000;
    while (!this.stopping) {
      if (this.room < Math.min(this.o.batchSize, this.o.concurrency) / 4) {
        this.waitingForRoom = true;
        await this.sleep(idleMs); // woken when sends finish
        this.waitingForRoom = false;
        continue;
      }
      this.notified = false;
      const excluded = this.saturated();
      this.excludedLast = excluded.length > 0;
      const limit = Math.min(this.room, this.o.batchSize);
      const perWebhook = this.o.perEndpoint * FAST_ENDPOINT_FACTOR;
      let claim: Claim;
      this.stoppedDuringClaim = new Set();
      this.gapDuringClaim = false;
      const claimedAt = Date.now();
      try {
        claim = await deliveries.claimDue(this.o.db, { workerId: this.workerId, limit, perWebhook, leaseMs: this.o.leaseMs, excludeWebhooks: excluded, stepAfter: this.stepAfter, fairAfter: this.fairAfter });
        this.claimFailures.succeeded();
      } catch (err) {
        this.stoppedDuringClaim = undefined;
        this.claimFailures.failed(err);
        await this.sleep(1000);
        continue;
      }
      const claimed = claim.deliveries;
      // A claim that stepped past left-out webhooks and stopped before the last one, or began
      // after the first: the webhooks it did not reach may have due deliveries.
      const stepsLeft = claim.stepAfter !== null || (claim.stepped && this.stepAfter !== null);
      this.stepAfter = claim.stepAfter;
      this.fairAfter = claim.fairAfter;
      // Fewer than asked and no webhook at its share: everything due (and not being
      // claimed by another worker) was taken. Held rows took places in the batch.
      this.moreDue = stepsLeft || claim.held > 0 || claimed.length >= limit || reachedShare(claimed, perWebhook);
      const dispatched = claimed.length === 0 || (await this.dispatchAll(claimed, claimedAt));
      this.stoppedDuringClaim = undefined;
      if (claimed.length > 0) {
        this.stats.claimed += claimed.length;
        if (!dispatched) {
          // Handed back for want of a key: NOTIFYs do not cut this wait short (each would
          // claim and hand back a batch again), and it doubles up to 30 s while it lasts.
          if (this.keyPauseMs > 0) await this.pause(this.keyPauseMs);
          else await this.sleep(1000);
          continue;
        }
        if (claimed.length >= Math.min(this.room + claimed.length, this.o.batchSize)) continue; // likely more due
      }
      if (stepsLeft) continue;
      if (this.notified) continue;
      if (claimed.length === 0 || this.askNextDue) {
        // Nothing (more) due for endpoints we can take: sleep until the next one falls due,
        // a NOTIFY, or a send finishing (which frees an endpoint we left out).
        this.askNextDue = false;
        const next = await deliveries.nextDueAt(this.o.db, excluded).catch(() => null);
        if (next) this.wakeAt(next);
      }
      if (!this.notified) await this.sleep(idleMs);
    }
  }

  /**
   * Sends an endpoint may have in flight here (additive increase, multiplicative
   * decrease): the per-endpoint cap to start with; +1 per fast success up to FAST_ENDPOINT_FACTOR × that;
   * back to the cap as soon as it is slow, so a slow endpoint never holds more; halved
   * on every failure.
   */
  private capOf(endpoint: string): number {
    return this.endpoints.get(endpoint)?.cap ?? this.o.perEndpoint;
  }

  private observe(endpoint: string, durationMs: number, ok: boolean): void {
    const h = this.endpoints.get(endpoint) ?? { latencyMs: durationMs, cap: this.o.perEndpoint };
    if (!this.endpoints.has(endpoint) && this.endpoints.size > 100_000) this.endpoints.clear();
    h.latencyMs = 0.8 * h.latencyMs + 0.2 * durationMs;
    if (!ok) h.cap = Math.max(1, Math.floor(h.cap / 2));
    else if (h.latencyMs >= FAST_ENDPOINT_MS) h.cap = Math.min(this.o.perEndpoint, h.cap + 1);
    else h.cap = Math.min(this.o.perEndpoint * FAST_ENDPOINT_FACTOR, h.cap + 1);
    this.endpoints.set(endpoint, h);
  }

  /**
   * About when the `behind`-th delivery handed back from a full lane would get its turn: what
   * the lane holds, plus those before it, over its cap, times its mean answer time. Counting
   * those handed back before it spreads them over the time the lane takes to drain, rather
   * than having them all fall due at one moment, when only a few can be taken.
   */
  private drainMs(endpoint: string, lane: EndpointLane, behind: number): number {
    const latencyMs = this.endpoints.get(endpoint)?.latencyMs ?? FAST_ENDPOINT_MS;
    const rounds = (lane.active + lane.waiting.length + behind) / this.capOf(endpoint);
    return Math.min(POSTPONE_MAX_MS, Math.max(POSTPONE_MIN_MS, Math.ceil(rounds * latencyMs)));
  }

  private full(endpoint: string, lane: EndpointLane): boolean {
    return lane.waiting.length >= this.capOf(endpoint);
  }

  /** After a lane's queue shrank: once it has room, the deliveries its exclusion hid are looked for again. */
  private roomMade(endpoint: string, lane: EndpointLane): void {
    if (lane.excluded && !this.full(endpoint, lane)) {
      lane.excluded = false;
      this.askNextDue = true;
    }
  }

  private get excludeMax(): number {
    return this.o.claimExcludeMax ?? 1_000;
  }

  /**
   * Webhooks of endpoints with a local backlog: not claimed for until it drains. Whole lanes,
   * at most `claimExcludeMax` webhooks in all (the claim walks past their due rows): a lane
   * that does not fit is claimed for, and what the claim brings for it goes back postponed.
   */
  private saturated(): string[] {
    const out: string[] = [];
    for (const [endpoint, lane] of this.lanes) {
      if (!this.full(endpoint, lane) || out.length + lane.webhooks.size > this.excludeMax) continue;
      out.push(...lane.webhooks);
      lane.excluded = true;
    }
    return out;
  }

  /** Starts or queues the claimed deliveries; false when their webhooks could not be read (all handed back). */
  private async dispatchAll(claimed: ClaimedDelivery[], claimedAt: number): Promise<boolean> {
    let loaded: LoadedTargets;
    try {
      // The claim read each webhook's version: targets already built from it need no read.
      const versions = new Map(claimed.map((d) => [d.webhook_id, d.webhook_updated_at]));
      loaded = await this.o.targets.load([...versions.keys()], versions);
    } catch (err) {
      this.o.logger.error({ err, deliveries: claimed.length }, 'could not load the claimed deliveries\' webhooks; handing them back');
      return this.handBackAll(claimed);
    }
    const { targets, unreadable } = loaded;
    if (unreadable.size > 0 && !this.o.targets.openedAny) {
      // No secret has opened in this process: most likely the key is wrong, not the rows.
      // Failing the deliveries would spend their attempts and pause their webhooks: they are
      // handed back instead, for a worker with the right key (or this one once restarted).
      this.keyFailures.failed(new Error([...unreadable.values()][0]), { webhooks: unreadable.size });
      this.keyPauseMs = Math.min(30_000, Math.max(1_000, this.keyPauseMs * 2));
      return this.handBackAll(claimed);
    }
    this.keyFailures.succeeded();
    this.keyPauseMs = 0;
    if (unreadable.size > 0) {
      this.o.logger.error({ webhooks: [...unreadable.keys()], reason: [...unreadable.values()][0] }, 'webhooks whose secret cannot be decrypted: their deliveries fail unsent');
    }
    const afterEarlierPages = await this.lastPagesToHold(claimed);
    /** Handed back unsent: due again at once, or (for a full lane whose webhooks a claim cannot leave out) postponed. */
    const release: deliveries.ReleasedClaim[] = [];
    /** How many this claim has handed back from each full lane so far. */
    const behind = new Map<string, number>();
    const orphans: string[] = [];
    let late = 0;
    for (const delivery of claimed) {
      const target = targets.get(delivery.webhook_id);
      const holdMs = afterEarlierPages.get(delivery.id);
      if (holdMs !== undefined) {
        release.push({ id: delivery.id, attempts: delivery.attempts, postponeMs: holdMs });
        continue;
      }
      if (this.gapDuringClaim || this.stoppedDuringClaim?.has(delivery.webhook_id)) {
        // Stopped after the claim read it live: back, and held (releaseClaims reads it now).
        release.push(delivery);
        continue;
      }
      const unreadableWhy = unreadable.get(delivery.webhook_id);
      if (unreadableWhy !== undefined) {
        this.stats.failed++;
        this.completions.add(unsentAttempt(delivery.id, delivery.webhook_id, delivery.attempts, this.o.retry, unreadableWhy));
        continue;
      }
      if (!target) {
        // Webhook gone (a delete racing an insert of an older version, migration 0006): drop
        // the delivery, or it would come back at every lease. Without a URL (changed after
        // the claim read it, which holds those): released, and held by releaseClaims.
        if (delivery.webhook_updated_at === null) orphans.push(delivery.id);
        else release.push(delivery);
        continue;
      }
      const q = { delivery, target, claimedAt };
      if (!this.leaseCovers(q)) {
        // The claim took so long (waiting for locks, say) that a send now could outlive its
        // lease: back, due now, to be claimed again with a lease of its own.
        release.push(delivery);
        late++;
        continue;
      }
      // Made here, a lane sends at once (its cap is at least 1): none is left idle.
      const lane = this.laneOf(target.endpoint, delivery.webhook_id);
      const cap = this.capOf(target.endpoint);
      if (lane.active < cap) {
        this.send(lane, q);
      } else if (lane.waiting.length < cap * 2) {
        lane.waiting.push(q);
        this.queued++;
      } else if (lane.webhooks.size <= this.excludeMax) {
        // The next claim leaves its webhooks out: due at once, for another worker to take.
        release.push(delivery);
      } else {
        // Too many webhooks to leave out: they would be claimed and handed back at every claim.
        const n = behind.get(target.endpoint) ?? 0;
        behind.set(target.endpoint, n + 1);
        release.push({ id: delivery.id, attempts: delivery.attempts, postponeMs: this.drainMs(target.endpoint, lane, n) });
      }
    }
    if (orphans.length > 0) {
      await deliveries.deleteOrphanClaims(this.o.db, this.workerId, orphans).then(
        () => this.o.logger.warn({ deliveries: orphans.length }, 'dropped deliveries whose webhook is gone'),
        (err: unknown) => this.o.logger.warn({ err }, 'could not drop deliveries of deleted webhooks; their leases will expire'),
      );
    }
    if (late > 0) {
      this.o.logger.warn({ deliveries: late, claimMs: Date.now() - claimedAt }, 'a claim took so long that its lease may not cover a send; handing it back');
      this.notified = true;
    }
    if (release.length > 0) {
      this.stats.released += release.length;
      this.moreDue = true;
      await deliveries.releaseClaims(this.o.db, this.workerId, release).catch((err: unknown) =>
        this.o.logger.warn({ err }, 'could not release claims; their leases will expire'),
      );
      // Those due again at once are claimed again at once (read anew: a webhook changed or
      // stopped during the claim). Nothing else wakes the loop for them: before, a delivery
      // handed back for a URL change made during its claim waited for the 30 s idle re-check.
      if (release.some((r) => !('postponeMs' in r) || !r.postponeMs)) this.notified = true;
      // Nothing else may wake this worker when postponed ones fall due (no NOTIFY comes for them).
      const soonest = Math.min(...release.map((r) => r.postponeMs ?? Number.POSITIVE_INFINITY));
      if (Number.isFinite(soonest)) this.wakeAt(new Date(Date.now() + soonest));
      if (behind.size > 0) this.askNextDue = true; // the later ones: the timer holds only the soonest
    }
    return true;
  }

  /**
   * Claimed last pages of initial syncs (INITIAL-COMPLETE) that must wait for the first attempt
   * of earlier pages of their webhook, and for how long (ms): until the earliest of those is
   * due, or a moment while one is being sent (in this claim, often); at most
   * LAST_PAGE_WAIT_MAX_MS, then asked again.
   * Best effort: when the question fails, the page goes now.
   */
  private async lastPagesToHold(claimed: readonly ClaimedDelivery[]): Promise<Map<string, number>> {
    const last = claimed.filter((d) => d.kind === 'virtual' && d.payload_json?.includes('INITIAL-COMPLETE') && (JSON.parse(d.payload_json) as StoredPayload).unified_type === 'INITIAL-COMPLETE');
    if (last.length === 0) return new Map();
    try {
      const waits = await deliveries.earlierPagesWait(this.o.db, last.map((d) => ({ id: d.id, webhookId: d.webhook_id, createdAt: d.created_at })));
      return new Map([...waits].map(([id, ms]) => [id, Math.min(LAST_PAGE_WAIT_MAX_MS, Math.max(LAST_PAGE_WAIT_MIN_MS, ms + LAST_PAGE_WAIT_MIN_MS))]));
    } catch (err) {
      this.o.logger.warn({ err }, 'could not check the pages before an initial sync\'s last page; sending it now');
      return new Map();
    }
  }

  /** The endpoint's lane, with the webhook in it (and out of the lane it was in before a URL change). */
  private laneOf(endpoint: string, webhookId: string): EndpointLane {
    let lane = this.lanes.get(endpoint);
    if (!lane) this.lanes.set(endpoint, (lane = { active: 0, waiting: [], webhooks: new Set(), excluded: false }));
    const before = this.laneOfWebhook.get(webhookId);
    if (before !== endpoint) {
      if (before !== undefined) this.lanes.get(before)?.webhooks.delete(webhookId);
      if (this.laneOfWebhook.size > 100_000) this.laneOfWebhook.clear();
      this.laneOfWebhook.set(webhookId, endpoint);
    }
    lane.webhooks.add(webhookId);
    return lane;
  }

  /** Forgets an endpoint's lane once nothing of it is sending or waiting here. */
  private dropIfIdle(endpoint: string): void {
    const lane = this.lanes.get(endpoint);
    if (lane && lane.active === 0 && lane.waiting.length === 0) this.lanes.delete(endpoint);
  }

  /** A whole claim handed back unsent (its webhooks could not be read or signed for); false, for dispatchAll to return. */
  private async handBackAll(claimed: readonly ClaimedDelivery[]): Promise<false> {
    this.stats.released += claimed.length;
    this.moreDue = true;
    await deliveries.releaseClaims(this.o.db, this.workerId, claimed).catch(() => undefined);
    return false;
  }

  /**
   * Whether a send started now still ends (timeout included, and a margin for timers) inside
   * the claim's lease. The margin is at most half of what the lease leaves past a timeout, so
   * that the shortest lease the config allows (2 × timeout) still covers a send.
   */
  private leaseCovers(q: Queued): boolean {
    const margin = Math.min(1000, (this.o.leaseMs - this.o.timeoutMs) / 2);
    return Date.now() - q.claimedAt + this.o.timeoutMs + margin < this.o.leaseMs;
  }

  private send(lane: EndpointLane, q: Queued): void {
    const { delivery, target } = q;
    lane.active++;
    this.inFlight++;
    this.stats.sent++;
    performAttempt(this.o.sender, target, messageOf(delivery), delivery.attempts, this.o.retry)
      .then((result) => {
        if (result.outcome === 'success') this.stats.succeeded++;
        else this.stats.failed++;
        this.observe(target.endpoint, result.attempt.durationMs, !strainsEndpoint(result.attempt.statusCode));
        this.completions.add(result);
      })
      .catch((err: unknown) => this.o.logger.error({ err, delivery: delivery.id }, 'attempt crashed; the lease will bring it back'))
      .finally(() => {
        lane.active--;
        this.inFlight--;
        this.startQueued(lane, target.endpoint);
        this.roomMade(target.endpoint, lane);
        this.dropIfIdle(target.endpoint);
        // Room freed (and maybe an endpoint we left out of claims): look for more work,
        // if the last claim may have left some.
        if (this.moreDue || this.excludedLast || this.waitingForRoom) {
          this.notified = true;
          this.wakeSignal?.();
        }
        if (this.inFlight === 0 && this.queued === 0) for (const r of this.idleResolvers.splice(0)) r();
      });
  }

  /**
   * Starts queued sends while the endpoint has room (its cap may have grown). One that
   * waited so long its lease may not cover the send is handed back instead: another
   * worker may take it over, and two sends must not happen.
   */
  private startQueued(lane: EndpointLane, endpoint: string): void {
    const expiring: ClaimRef[] = [];
    while (lane.active < this.capOf(endpoint) && lane.waiting.length > 0) {
      const next = lane.waiting.shift() as Queued;
      this.queued--;
      if (this.leaseCovers(next)) this.send(lane, next);
      else expiring.push(next.delivery);
    }
    if (expiring.length > 0) this.moreDue = true;
    if (expiring.length > 0) void deliveries.releaseClaims(this.o.db, this.workerId, expiring).catch(() => undefined);
  }

  /** Paused or disabled webhooks: hand their not-yet-sent deliveries back (they end up held). */
  private dropQueued(webhookIds: string[]): void {
    const ids: ClaimRef[] = [];
    const stopped = new Set(webhookIds);
    // Every lane, not only those listing the webhook: one whose URL changed while the NOTIFY
    // of it was missed left its old lane's list, but may still have sends queued there.
    for (const [endpoint, lane] of this.lanes) {
      const kept: Queued[] = [];
      for (const w of lane.waiting) {
        if (stopped.has(w.delivery.webhook_id)) ids.push(w.delivery);
        else kept.push(w);
      }
      this.queued -= lane.waiting.length - kept.length;
      lane.waiting = kept;
      for (const id of webhookIds) lane.webhooks.delete(id);
      this.roomMade(endpoint, lane);
      this.dropIfIdle(endpoint);
    }
    // Released, they are pending again if their webhook is still sendable (it changed rather
    // than stopped): claim again then, rather than at the next NOTIFY or idle re-check.
    if (ids.length > 0) {
      void deliveries.releaseClaims(this.o.db, this.workerId, ids).then(
        () => this.wake(),
        () => undefined,
      );
    }
  }

  /** Stops claiming, lets in-flight sends finish (up to `graceMs`), returns the rest, records everything. */
  async stop(graceMs = 10_000): Promise<void> {
    this.stopping = true;
    this.wakeSignal?.();
    if (this.retryTimer) clearTimeout(this.retryTimer);
    await this.loop?.catch(() => undefined);
    const waiting: ClaimRef[] = [];
    for (const lane of this.lanes.values()) {
      waiting.push(...lane.waiting.map((w) => w.delivery));
      this.queued -= lane.waiting.length;
      lane.waiting = [];
    }
    if (waiting.length > 0) await deliveries.releaseClaims(this.o.db, this.workerId, waiting).catch(() => undefined);
    if (this.inFlight > 0) {
      await Promise.race([new Promise<void>((r) => this.idleResolvers.push(r)), new Promise((r) => setTimeout(r, graceMs))]);
    }
    // With the database away, the results are retried for a few seconds more, not for the lease.
    this.completions.giveUpBy(Date.now() + 3_000);
    await this.completions.flush();
  }
}

/** Whether some webhook got `share` deliveries in this claim (more of its may be due). */
function reachedShare(claimed: readonly ClaimedDelivery[], share: number): boolean {
  if (claimed.length < share) return false;
  const counts = new Map<string, number>();
  for (const d of claimed) {
    const n = (counts.get(d.webhook_id) ?? 0) + 1;
    if (n >= share) return true;
    counts.set(d.webhook_id, n);
  }
  return false;
}
