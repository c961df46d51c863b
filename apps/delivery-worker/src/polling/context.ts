import type { Db, SecretBox } from '@hookpost/db';
import type { Config, Logger } from '@hookpost/runtime';
import type { SourceAdapter } from '@hookpost/sources';
import type { RunEvents } from './run-events.js';

/** What every poll needs; one per worker process. */
export interface PollContext {
  db: Db;
  logger: Logger;
  workerId: string;
  adapters: ReadonlyMap<string, SourceAdapter>;
  box: SecretBox;
  /** `deliveryFailureThreshold`: HEALTH_FAILURE_THRESHOLD, the endpoint's streak that makes a webhook unhealthy. */
  settings: Config['polling'] & { minIntervalMinutes: number; pauseAfterSeconds: number; deliveryFailureThreshold: number };
  runEvents: RunEvents;
  stats: PollStats;
  /** Aborted when the worker stops: requests in flight end, runs resume elsewhere. */
  signal: AbortSignal;
}

export interface PollStats {
  connections: number;
  runs: number;
  failedRuns: number;
  throttled: number;
  pages: number;
  changes: number;
  deliveries: number;
}

export const emptyPollStats = (): PollStats => ({ connections: 0, runs: 0, failedRuns: 0, throttled: 0, pages: 0, changes: 0, deliveries: 0 });
