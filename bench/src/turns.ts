/**
 * The order of measurements. (a) and (b) run `cfg.rounds` times with the systems taking
 * turns (pg-boss, Hookpost; then Hookpost, pg-boss; …), each after an ANALYZE and a CHECKPOINT, so a
 * shared machine that slows down or speeds up for a minute affects both alike. Each
 * system's figure is its median round; the ratio is the median of the rounds' ratios.
 * (c) and (d) run once per system.
 */
import type { BenchConfig, Contender, Throughput } from './context.js';

export async function measureInTurns(cfg: BenchConfig, contenders: readonly Contender[], beforeEach: () => Promise<void>): Promise<void> {
  const turns = (round: number) => (round % 2 === 1 ? contenders : [...contenders].reverse());
  if (cfg.phases.has('a')) {
    for (let round = 1; round <= cfg.rounds; round++) {
      for (const c of turns(round)) {
        await beforeEach();
        (c.result.batchRounds ??= []).push(await c.batch(round));
      }
    }
    for (const c of contenders) c.result.batch = medianRound(c.result.batchRounds);
  }
  if (cfg.phases.has('b')) {
    for (let round = 1; round <= cfg.rounds; round++) {
      for (const c of turns(round)) {
        await beforeEach();
        (c.result.singleRounds ??= []).push(await c.single(round));
      }
    }
    for (const c of contenders) c.result.single = medianRound(c.result.singleRounds);
  }
  if (cfg.phases.has('c')) {
    for (const c of contenders) {
      await beforeEach();
      c.result.latency = await c.steady();
    }
  }
  if (cfg.phases.has('d') && cfg.fanout > 0) {
    for (const c of contenders) {
      await beforeEach();
      c.result.fanout = await c.fanout();
    }
  }
}

/** The round with the median delivery rate (the lower middle one for an even count). */
export function medianRound(rounds: readonly Throughput[] | undefined): Throughput | undefined {
  if (!rounds?.length) return undefined;
  const sorted = [...rounds].sort((a, b) => a.deliveredPerSec - b.deliveredPerSec);
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

/** The median of some numbers (the lower middle one for an even count). */
export function median(xs: readonly number[]): number {
  const sorted = [...xs].sort((x, y) => x - y);
  return sorted[Math.floor((sorted.length - 1) / 2)] as number;
}

/** Median of per-round ratios a[i] / b[i] (rounds paired by index: they ran back to back). */
export function medianRatio(a: readonly Throughput[] | undefined, b: readonly Throughput[] | undefined): number | undefined {
  if (!a?.length || !b?.length) return undefined;
  return median(a.slice(0, b.length).map((x, i) => x.deliveredPerSec / (b[i] as Throughput).deliveredPerSec));
}
