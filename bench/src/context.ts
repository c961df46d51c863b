import { envInt, envNum } from './common.js';
import type { ReceiverProc } from './procs.js';
import type { SlowStatement } from './slow-queries.js';

export interface BenchConfig {
  /** (a) events ingested in batches. */
  events: number;
  batchSize: number;
  /** Batch requests (or pg-boss insert calls) in flight at once. */
  batchConcurrency: number;
  /** (b) events sent one per request. */
  singleEvents: number;
  clients: number;
  /** (c) steady-rate latency. */
  rate: number;
  pgbossRate: number;
  steadySeconds: number;
  /** (c): seconds at the rate before the measured window (delivered and verified, not in its percentiles). */
  steadyLeadSeconds: number;
  /** (d) webhooks for the fan-out test, and concurrency creating them. */
  fanout: number;
  fanoutCreateConcurrency: number;
  /** (f) raw ceiling. */
  rawEvents: number;
  rawConnections: number;
  /** Events sent (and drained) before each system's measurements. */
  warmup: number;
  drainTimeoutMs: number;
  stallMs: number;
  boss: { workers: number; batch: number; pollS: number; connections: number };
  /** Which parts run: raw, pgboss, hookpost, virtual. */
  only: Set<string>;
  /** Which measurements run: a, b, c, d. */
  phases: Set<string>;
  /** (a) and (b) are measured this many times, the systems taking turns. */
  rounds: number;
}

export function loadBenchConfig(): BenchConfig {
  const only = (process.env.BENCH_ONLY ?? 'raw,pgboss,hookpost,virtual').split(',').map((s) => s.trim()).filter(Boolean);
  const phases = (process.env.BENCH_PHASES ?? 'a,b,c,d').split(',').map((s) => s.trim()).filter(Boolean);
  for (const p of phases) if (!['a', 'b', 'c', 'd'].includes(p)) throw new Error(`BENCH_PHASES: unknown phase ${p} (a, b, c, d)`);
  for (const o of only) if (!['raw', 'pgboss', 'hookpost', 'virtual'].includes(o)) throw new Error(`BENCH_ONLY: unknown part ${o} (raw, pgboss, hookpost, virtual)`);
  return {
    events: envInt('BENCH_EVENTS', 50_000, 1000, 5_000_000),
    batchSize: envInt('BENCH_BATCH_SIZE', 1000, 1, 1000),
    batchConcurrency: envInt('BENCH_BATCH_CONCURRENCY', 4, 1, 64),
    singleEvents: envInt('BENCH_SINGLE_EVENTS', 20_000, 100, 1_000_000),
    clients: envInt('BENCH_CLIENTS', 32, 1, 1024),
    rate: envInt('BENCH_RATE', 500, 1, 100_000),
    pgbossRate: envInt('BENCH_PGBOSS_RATE', envInt('BENCH_RATE', 500, 1, 100_000), 1, 100_000),
    steadySeconds: envNum('BENCH_STEADY_SECONDS', 15, 1, 600),
    steadyLeadSeconds: envNum('BENCH_STEADY_LEAD_SECONDS', 3, 0, 60),
    fanout: envInt('BENCH_FANOUT', 10_000, 1, 100_000),
    fanoutCreateConcurrency: envInt('BENCH_FANOUT_CREATE_CONCURRENCY', 16, 1, 256),
    rawEvents: envInt('BENCH_RAW_EVENTS', 100_000, 1000, 10_000_000),
    rawConnections: envInt('BENCH_RAW_CONNECTIONS', 64, 1, 1024),
    warmup: envInt('BENCH_WARMUP', 2000, 0, 1_000_000),
    drainTimeoutMs: envInt('BENCH_DRAIN_TIMEOUT_S', 180, 5, 3600) * 1000,
    stallMs: envInt('BENCH_STALL_S', 30, 2, 3600) * 1000,
    boss: {
      workers: envInt('BENCH_PGBOSS_WORKERS', 8, 1, 64),
      batch: envInt('BENCH_PGBOSS_BATCH', 250, 1, 5000),
      pollS: envNum('BENCH_PGBOSS_POLL_S', 0.5, 0.5, 60),
      connections: envInt('BENCH_PGBOSS_CONNECTIONS', 128, 1, 1024),
    },
    only: new Set(only),
    phases: new Set(phases),
    rounds: envInt('BENCH_ROUNDS', 3, 1, 20),
  };
}

export interface Ctx {
  run: string;
  /** Postgres server URL used for CREATE/DROP DATABASE. */
  serverUrl: string;
  receiver: ReceiverProc;
  logDir: string;
  repoRoot: string;
  cfg: BenchConfig;
}

export interface Throughput {
  events: number;
  deliveries: number;
  ingestSeconds: number;
  drainSeconds: number;
  ingestPerSec: number;
  deliveredPerSec: number;
  duplicates: number;
  /** Re-deliveries of earlier phases that arrived during this one. */
  lateDuplicates: number;
  stray: number;
  /**
   * CPU µs per delivery over the phase: the system under test (its processes and its
   * Postgres) and the harness (driver, verifying receiver, sampler).
   */
  cpuUsPerDelivery?: { system: number; harness: number };
  /** Cores busy over the phase, everything on the machine that the meter sees. */
  coresBusy?: number;
  /** WAL the database server wrote over the phase, bytes per delivery. */
  walBytesPerDelivery?: number;
  /** Share of the machine's CPU time stolen by the hypervisor over the round (0–1). */
  stealShare?: number;
}

export interface Latency {
  targetRate: number;
  events: number;
  achievedRate: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  /** Seconds at the rate before the measured window (not in the percentiles above), and their p50/p99. */
  leadSeconds: number;
  leadP50: number;
  leadP99: number;
  maxSendLagMs: number;
  /** The ingest call itself (HTTP 202 / pg-boss send committed), from the scheduled send. */
  ackP50: number;
  ackP99: number;
  duplicates: number;
  lateDuplicates: number;
}

export interface Fanout {
  webhooks: number;
  setupSeconds: number;
  commitMs: number;
  deliverAllMs: number;
  duplicates: number;
  lateDuplicates: number;
}

export interface SystemResult {
  name: string;
  skipped?: string;
  /** (a) and (b): the median round, and every round in the order run. */
  batch?: Throughput;
  batchRounds?: Throughput[];
  single?: Throughput;
  singleRounds?: Throughput[];
  latency?: Latency;
  fanout?: Fanout;
  workerHwmMb?: number;
  workerHwmBeforeFanoutMb?: number;
  apiHwmMb?: number;
  logProblems?: Record<string, number>;
  /** Deliveries that arrived after their phase ended (all phases, warm-ups included). */
  late?: { lateDuplicates: number; stray: number };
  /** Statements seen running > 500 ms in this system's database (diagnostics). */
  slowStatements?: SlowStatement[];
  notes: string[];
}

/**
 * A system under test, started and warmed up. Each call is one measurement; the driver
 * decides the order (the systems take turns, so a machine that slows down or speeds up
 * during the run affects both alike).
 */
export interface Contender {
  readonly result: SystemResult;
  /** The system's own database (ANALYZEd before each measurement). */
  readonly databaseUrl: string;
  /** (a) one round. */
  batch(round: number): Promise<Throughput>;
  /** (b) one round. */
  single(round: number): Promise<Throughput>;
  /** (c) */
  steady(): Promise<Latency>;
  /** (d) */
  fanout(): Promise<Fanout>;
  /** After the last measurement (and on failure): late deliveries, memory, then stops the system. */
  finish(): Promise<void>;
}
