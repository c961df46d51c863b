/**
 * Shared by the driver, the receiver and the pg-boss worker: the synthetic event,
 * its integrity check, clocks, env parsing and small helpers.
 */
import { createHash } from 'node:crypto';

/** Wall-clock time in microseconds with sub-millisecond resolution (comparable across local processes). */
export function nowUs(): number {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}

export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Integer from the environment, with a default and bounds (bad values are an error, not a silent default). */
export function envInt(name: string, def: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return def;
  const n = Number(raw);
  if (!Number.isFinite(n) || !Number.isInteger(n) || n < min || n > max) {
    throw new Error(`${name}=${raw}: expected an integer in [${min}, ${max}]`);
  }
  return n;
}

export function envNum(name: string, def: number, min = 0, max = Number.MAX_VALUE): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return def;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min || n > max) throw new Error(`${name}=${raw}: expected a number in [${min}, ${max}]`);
  return n;
}

/** The integrity check carried in each event: the receiver recomputes it from the other fields. */
export function checkOf(run: string, phase: string, seq: number, sentUs: number): string {
  return createHash('sha256').update(`${run}|${phase}|${seq}|${sentUs}|${fixedFields(seq).email}`).digest('hex').slice(0, 32);
}

/** Deterministic CRM-contact-like fields of event `seq` (so the receiver can check them). */
export function fixedFields(seq: number) {
  return {
    first_name: `Ada${seq}`,
    last_name: 'Lovelace',
    email: `ada.${seq}@example.com`,
    company: 'Analytical Engines Ltd',
    title: 'Head of Computation',
    phone: `+44 20 7946 ${String(seq % 10_000).padStart(4, '0')}`,
    tags: ['bench', 'crm', `n${seq % 97}`],
  };
}

/** The `data` of one synthetic event (~400 bytes as JSON). */
export function eventData(run: string, phase: string, seq: number, sentUs: number): Record<string, unknown> {
  return {
    id: `contact_${seq}`,
    bench_run: run,
    bench_phase: phase,
    seq,
    sent_us: sentUs,
    ...fixedFields(seq),
    updated_at: '2026-11-22T07:00:00.000Z',
    check: checkOf(run, phase, seq, sentUs),
  };
}

/** The Truto-style envelope the baselines send (what Hookpost's Truto face sends). */
export function envelope(eventId: string, webhookId: string, data: Record<string, unknown>, createdAt: string): string {
  return JSON.stringify({ id: eventId, event: 'record:created', payload: data, environment_id: 'bench', created_at: createdAt, webhook_id: webhookId });
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx] as number;
}

export function log(line: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
}

/** Receiver control protocol (IPC). */
export interface PhaseConfig {
  phase: string;
  run: string;
  /** webhook id (the body's `webhook_id`) → signing secret. */
  secrets: Record<string, string>;
  /** Also verify `x-truto-signature` (Hookpost's Truto face). */
  requireTruto: boolean;
  expected: number;
  collectLatency: boolean;
}

export interface ReceiverStats {
  phase: string;
  /** Unique (event id, webhook id) pairs received, valid. */
  unique: number;
  /** Requests whose webhook-id header was seen before in this phase. */
  duplicateIds: number;
  /** Same (event, webhook) delivered again under a different webhook-id. */
  duplicateEvents: number;
  /** Re-deliveries, arriving in this phase, of deliveries first received in an earlier phase. */
  lateDuplicates: number;
  failures: number;
  failureSamples: string[];
  /** First receipts of another phase's events (late arrivals). */
  stray: number;
  requests: number;
  distinctWebhooks: number;
  firstAtUs: number | null;
  lastAtUs: number | null;
  /** When `unique` reached `expected`. */
  completeAtUs: number | null;
  latenciesMs?: number[];
  /** The seq of the event of each `latenciesMs` sample. */
  latencySeqs?: number[];
}

/** The pg-boss baseline's queue and job payload (one job = one delivery). */
export const PGBOSS_QUEUE = 'webhook-delivery';

export interface DeliveryJob {
  event_id: string;
  /** Fan-out test: the subscriber this copy goes to (default: the worker's one webhook). */
  webhook_id?: string;
  created_at: string;
  data: Record<string, unknown>;
}
