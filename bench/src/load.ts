/**
 * Load shapes and phase measurement shared by every system under test.
 */
import { writeFileSync } from 'node:fs';
import { log, nowUs, percentile, sleep, type PhaseConfig, type ReceiverStats } from './common.js';
import type { Latency, Throughput } from './context.js';
import { formatCpu, splitCpu, type CpuMeter, type CpuUsage, type ReceiverProc } from './procs.js';

/** `concurrency` loops take indexes 0..n-1 in order; the first error stops all and is thrown. */
export async function closedLoop(n: number, concurrency: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failed: unknown;
  const loop = async () => {
    while (failed === undefined && next < n) {
      const i = next++;
      try {
        await fn(i);
      } catch (err) {
        failed ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, loop));
  if (failed !== undefined) throw failed;
}

export interface OpenLoopResult {
  events: number;
  /** From the first scheduled send to the last actual send. */
  dispatchSeconds: number;
  /** Worst lateness of a send against its schedule (driver overload indicator). */
  maxLagMs: number;
  /** Most requests outstanding at once. */
  maxOutstanding: number;
  /** Per event, by its index: scheduled send → the ingest call returned (202 / insert committed), ms. */
  ackMs: number[];
}

/**
 * Open-loop arrivals: event i is due at start + i/rate, sent then whether or not
 * earlier requests have been answered. `fire` gets the scheduled time (µs), which is
 * what latency is measured from (no coordinated omission). Bounded in count, time and
 * outstanding requests.
 */
export async function openLoop(
  rate: number,
  seconds: number,
  fire: (i: number, scheduledUs: number) => Promise<void>,
  maxOutstanding = 5000,
): Promise<OpenLoopResult> {
  const total = Math.round(rate * seconds);
  const intervalUs = 1e6 / rate;
  const startUs = nowUs() + 50_000;
  let next = 0;
  let outstanding = 0;
  let peak = 0;
  let maxLagUs = 0;
  let failed: unknown;
  const inflight = new Set<Promise<void>>();
  const ackMs: number[] = new Array<number>(total).fill(Number.NaN);
  const deadlineUs = startUs + (seconds + 30) * 1e6;
  for (let spins = 0; next < total && spins < 10_000_000; spins++) {
    if (failed !== undefined) break;
    const now = nowUs();
    if (now > deadlineUs) throw new Error(`open loop: could not dispatch ${total} events within ${seconds + 30} s (sent ${next})`);
    while (next < total && startUs + next * intervalUs <= now) {
      const scheduled = Math.round(startUs + next * intervalUs);
      maxLagUs = Math.max(maxLagUs, now - scheduled);
      const i = next++;
      outstanding++;
      peak = Math.max(peak, outstanding);
      if (outstanding > maxOutstanding) throw new Error(`open loop: more than ${maxOutstanding} requests outstanding; the system cannot keep up with ${rate}/s`);
      const p: Promise<void> = fire(i, scheduled)
        .then(() => {
          ackMs[i] = (nowUs() - scheduled) / 1000;
        })
        .catch((err: unknown) => {
          failed ??= err;
        })
        .finally(() => {
          outstanding--;
          inflight.delete(p);
        });
      inflight.add(p);
    }
    await sleep(1);
  }
  const lastSendUs = nowUs();
  await Promise.race([Promise.all(inflight), sleep(60_000)]);
  if (failed !== undefined) throw failed;
  if (inflight.size > 0) throw new Error(`open loop: ${inflight.size} requests unanswered 60 s after the last send`);
  return { events: total, dispatchSeconds: (lastSendUs - startUs) / 1e6, maxLagMs: maxLagUs / 1000, maxOutstanding: peak, ackMs };
}

export interface DrainResult {
  expected: number;
  /** Producer start → producer done (all accepted/committed). */
  ingestSeconds: number;
  /** Producer start → receiver holds every expected delivery. */
  drainSeconds: number;
  stats: ReceiverStats;
  /** Where the phase's CPU went (when metered). */
  cpu?: CpuUsage;
}

export interface PhaseLimits {
  timeoutMs: number;
  stallMs: number;
  isAlive?: () => string | null;
  /** Starts a CPU meter for the phase; its report (where the phase's CPU went) is logged at the end. */
  cpu?: () => Promise<CpuMeter>;
}

/**
 * Resets the receiver for a phase, runs the producer, waits until every delivery
 * arrived, then lets late duplicates land (settleMs) and re-reads the counters.
 * Throws — loudly — on any lost, badly signed or corrupted delivery.
 */
export async function measurePhase(
  receiver: ReceiverProc,
  cfg: PhaseConfig,
  limits: PhaseLimits,
  produce: () => Promise<unknown>,
  tally?: LateTally,
  settleMs = 500,
): Promise<DrainResult> {
  await receiver.reset(cfg);
  const meter = await limits.cpu?.();
  const startUs = nowUs();
  await produce();
  const ingestDoneUs = nowUs();
  const got = await receiver.waitFor(cfg.expected, { ...limits, label: cfg.phase });
  assertClean(cfg.phase, got);
  await sleep(settleMs);
  const stats = await receiver.stats(cfg.collectLatency);
  assertClean(cfg.phase, stats);
  const cpu = meter ? await meter.measure() : undefined;
  if (cpu) log(`${cfg.phase}: ${formatCpu(cpu)}`);
  if (tally) {
    tally.lateDuplicates += stats.lateDuplicates;
    tally.stray += stats.stray;
  }
  const doneUs = stats.completeAtUs ?? stats.lastAtUs ?? nowUs();
  return { expected: cfg.expected, ingestSeconds: (ingestDoneUs - startUs) / 1e6, drainSeconds: (doneUs - startUs) / 1e6, stats, ...(cpu ? { cpu } : {}) };
}

/** Deliveries that arrived after their phase had ended, summed over a system's phases. */
export interface LateTally {
  lateDuplicates: number;
  stray: number;
}

/**
 * After a system's last phase: listens for `ms` more (while its worker still runs) and
 * adds what arrives late to the tally. Bad deliveries still fail the run.
 */
export async function tail(receiver: ReceiverProc, run: string, label: string, tally: LateTally, ms = 1500): Promise<void> {
  await receiver.reset({ phase: `${label}-tail`, run, secrets: {}, requireTruto: false, expected: 0, collectLatency: false });
  await sleep(ms);
  const s = await receiver.stats();
  assertClean(`${label} (after the last phase)`, s);
  tally.lateDuplicates += s.lateDuplicates;
  tally.stray += s.stray;
}

export class BenchFailure extends Error {}

export function assertClean(phase: string, s: ReceiverStats): void {
  if (s.failures > 0) {
    throw new BenchFailure(
      `${phase}: ${s.failures} BAD DELIVERIES (bad signature, corrupted or unexpected body). First ones:\n  - ${s.failureSamples.join('\n  - ')}`,
    );
  }
}

export function describe(stats: ReceiverStats): string {
  return (
    `${stats.unique} unique, ${stats.duplicateIds} duplicate webhook-ids, ${stats.duplicateEvents} re-sent events` +
    `, ${stats.lateDuplicates} late duplicates of earlier phases, ${stats.stray} stray`
  );
}

export function progress(line: string): void {
  log(line);
}

export function throughputOf(events: number, r: DrainResult): Throughput {
  return {
    events,
    deliveries: r.expected,
    ingestSeconds: r.ingestSeconds,
    drainSeconds: r.drainSeconds,
    ingestPerSec: events / r.ingestSeconds,
    deliveredPerSec: r.expected / r.drainSeconds,
    duplicates: r.stats.duplicateIds + r.stats.duplicateEvents,
    lateDuplicates: r.stats.lateDuplicates,
    stray: r.stats.stray,
    ...(r.cpu ? cpuFigures(r.cpu, r.expected) : {}),
  };
}

/** CPU µs per delivery (system, harness) and the cores busy over the phase. */
function cpuFigures(u: CpuUsage, deliveries: number): Pick<Throughput, 'cpuUsPerDelivery' | 'coresBusy' | 'walBytesPerDelivery' | 'stealShare'> {
  const { system, harness } = splitCpu(u);
  return {
    cpuUsPerDelivery: { system: (system / deliveries) * 1e6, harness: (harness / deliveries) * 1e6 },
    coresBusy: (system + harness) / u.wallSeconds,
    ...(u.walBytes !== undefined ? { walBytesPerDelivery: u.walBytes / deliveries } : {}),
    ...(u.stealShare !== undefined ? { stealShare: u.stealShare } : {}),
  };
}

/**
 * (c) for one system: `rate` events/s, open loop, for `leadSeconds` then `seconds`; the
 * percentiles are over the last `seconds`. The lead-in (the first events after the phase's
 * ANALYZE and CHECKPOINT, with the system idle until then) is delivered and verified like the
 * rest, and its own p99 is reported beside the steady figures.
 */
export async function measureSteady(
  receiver: ReceiverProc,
  timing: { rate: number; seconds: number; leadSeconds: number },
  phaseCfg: (expected: number) => PhaseConfig,
  limits: PhaseLimits,
  fire: (i: number, scheduledUs: number) => Promise<void>,
  tally: LateTally,
  samplesFile: string,
): Promise<Latency> {
  const { rate, seconds, leadSeconds } = timing;
  const total = Math.round(rate * (leadSeconds + seconds));
  let ol: OpenLoopResult | undefined;
  const r = await measurePhase(receiver, phaseCfg(total), limits, async () => {
    ol = await openLoop(rate, leadSeconds + seconds, fire);
  }, tally);
  if (!ol) throw new Error('open loop did not run');
  return latencyOf(rate, leadSeconds, ol, r, samplesFile);
}

function latencyOf(targetRate: number, leadSeconds: number, ol: OpenLoopResult, r: DrainResult, samplesFile: string): Latency {
  const all = r.stats.latenciesMs ?? [];
  const seqs = r.stats.latencySeqs ?? [];
  if (all.length !== r.expected || seqs.length !== all.length) throw new BenchFailure(`${r.stats.phase}: ${all.length} latency samples for ${r.expected} events`);
  const leadEvents = Math.round(targetRate * leadSeconds);
  // The raw samples, for looking at the tail over time: receipts in arrival order with their event, acks by event.
  writeFileSync(samplesFile, JSON.stringify({ leadEvents, latencyMs: all, seq: seqs, ackMs: ol.ackMs }));
  const steady = all.filter((_, k) => (seqs[k] as number) >= leadEvents).sort((a, b) => a - b);
  const lead = all.filter((_, k) => (seqs[k] as number) < leadEvents).sort((a, b) => a - b);
  const acks = ol.ackMs.slice(leadEvents).sort((a, b) => a - b);
  const events = ol.events - leadEvents;
  return {
    targetRate,
    events,
    achievedRate: ol.events / ol.dispatchSeconds,
    p50: percentile(steady, 50),
    p90: percentile(steady, 90),
    p99: percentile(steady, 99),
    p999: percentile(steady, 99.9),
    max: steady[steady.length - 1] as number,
    leadSeconds,
    leadP50: lead.length > 0 ? percentile(lead, 50) : Number.NaN,
    leadP99: lead.length > 0 ? percentile(lead, 99) : Number.NaN,
    maxSendLagMs: ol.maxLagMs,
    lateDuplicates: r.stats.lateDuplicates,
    ackP50: percentile(acks, 50),
    ackP99: percentile(acks, 99),
    duplicates: r.stats.duplicateIds + r.stats.duplicateEvents,
  };
}
