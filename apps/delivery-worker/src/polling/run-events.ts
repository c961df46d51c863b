import { events, newId, polling, type Db } from '@hookpost/db';
import { sql } from 'kysely';

export type RunEventStatus = 'started' | 'completed' | 'failed' | 'rate_limited';

export interface RunEventData {
  workspaceId: string;
  environmentId: string;
  connectionId: string;
  streamId: string;
  runId: string | null;
  objectType: string;
  status: RunEventStatus;
  startedAt: Date | null;
  finishedAt?: Date;
  pages?: number;
  recordsSeen?: number;
  changes?: number;
  error?: string;
  /** rate_limited: how long the source asked to wait before the run goes on, seconds. */
  retryAfterSeconds?: number;
}

/**
 * Publishes `sync_job_run:started|completed|failed|rate_limited` through the normal event path
 * (so Truto-face subscribers get them, signed and retried). Callers ask `listening`
 * first (cached a few seconds per environment) and publish only when someone listens.
 */
export class RunEvents {
  private readonly listeners = new Map<string, { value: boolean; until: number }>();

  constructor(private readonly cacheMs = 5000) {}

  /** Whether any webhook of this workspace + environment listens (cached a few seconds). */
  async listening(db: Db, workspaceId: string, environmentId: string): Promise<boolean> {
    const key = `${workspaceId}/${environmentId}`;
    const hit = this.listeners.get(key);
    if (hit && hit.until > Date.now()) return hit.value;
    const value = await polling.hasRunSubscribers(db, workspaceId, environmentId);
    this.listeners.set(key, { value, until: Date.now() + this.cacheMs });
    return value;
  }

  /** In the caller's transaction: the notice commits (durably) with the run state it describes. */
  async publish(db: Db, e: RunEventData): Promise<void> {
    await sql`set local synchronous_commit = on`.execute(db);
    await events.ingestEvents(db, [
      {
        id: newId(),
        workspaceId: e.workspaceId,
        environmentId: e.environmentId,
        externalId: null,
        type: `sync_job_run:${e.status}`,
        objectType: null,
        connectionId: e.connectionId,
        data: {
          id: e.runId,
          sync_job_id: e.streamId,
          integrated_account_id: e.connectionId,
          resource: e.objectType,
          // As Truto's sync job run: receivers written for it read the account from `args`.
          args: { integrated_account_id: e.connectionId },
          // A rate-limited run is still running: it goes on after the source's Retry-After.
          status: e.status === 'started' || e.status === 'rate_limited' ? 'running' : e.status,
          started_at: e.startedAt?.toISOString() ?? null,
          finished_at: e.finishedAt?.toISOString() ?? null,
          resource_stats: e.status === 'started' ? undefined : { pages: e.pages ?? 0, records: e.recordsSeen ?? 0, changes: e.changes ?? 0 },
          error: e.error ?? null,
          ...(e.retryAfterSeconds === undefined ? {} : { retry_after: e.retryAfterSeconds }),
        },
      },
    ]);
  }
}
