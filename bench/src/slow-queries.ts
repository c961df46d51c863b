/**
 * Diagnostics: samples pg_stat_activity of one database while a system runs and keeps
 * the longest-running statements seen (per statement shape). Costs one small query
 * every 250 ms on its own connection; reported, never fatal.
 */
import { adminQuery } from '@hookpost/db';
import pg from 'pg';
import { envInt, log } from './common.js';

/**
 * BENCH_AUTO_EXPLAIN_MS=N: every new session of the database logs the plan of any
 * statement slower than N ms to the server log (auto_explain; for the embedded server:
 * bench/.runs/<run>/postgres.log). Diagnostics; needs superuser.
 */
export async function autoExplain(serverUrl: string, database: string): Promise<void> {
  const ms = envInt('BENCH_AUTO_EXPLAIN_MS', 0, 0, 3_600_000);
  if (ms === 0) return;
  const db = `"${database.replace(/"/g, '""')}"`;
  try {
    await adminQuery(serverUrl, `alter database ${db} set session_preload_libraries = 'auto_explain'`);
    await adminQuery(serverUrl, `alter database ${db} set auto_explain.log_min_duration = ${ms}`);
    await adminQuery(serverUrl, `alter database ${db} set auto_explain.log_nested_statements = on`);
    if (process.env.BENCH_AUTO_EXPLAIN_ANALYZE === '1') {
      await adminQuery(serverUrl, `alter database ${db} set auto_explain.log_analyze = on`);
      await adminQuery(serverUrl, `alter database ${db} set auto_explain.log_buffers = on`);
    }
  } catch (err) {
    log(`auto_explain not set up: ${String((err as Error)?.message ?? err)}`);
  }
}

export interface SlowStatement {
  application: string;
  longestMs: number;
  /** Samples in which it was seen running for more than the threshold. */
  samples: number;
  /** What it was doing when sampled: wait_event_type:wait_event, or `cpu` (running). */
  waits: Record<string, number>;
  query: string;
}

export class SlowQuerySampler {
  private client: pg.Client | undefined;
  private timer: NodeJS.Timeout | undefined;
  private busy = false;
  private readonly seen = new Map<string, SlowStatement>();
  private phase = '';

  constructor(
    private readonly url: string,
    private readonly database: string,
    private readonly thresholdMs = 500,
  ) {}

  async start(): Promise<void> {
    this.client = new pg.Client({ connectionString: this.url, application_name: 'bench-sampler' });
    this.client.on('error', () => undefined);
    await this.client.connect();
    this.timer = setInterval(() => void this.sample(), 250);
  }

  /** Labels what follows (statements are reported with the phase they were seen in). */
  setPhase(phase: string): void {
    this.phase = phase;
  }

  private async sample(): Promise<void> {
    if (this.busy || !this.client) return;
    this.busy = true;
    try {
      const r = await this.client.query<{ app: string; ms: number; query: string; wait: string | null }>(
        `select application_name as app, extract(epoch from now() - query_start) * 1000 as ms, query,
                wait_event_type || ':' || wait_event as wait
           from pg_stat_activity
          where datname = $1 and state = 'active' and pid <> pg_backend_pid()
            and now() - query_start > make_interval(secs => $2::float8 / 1000)`,
        [this.database, this.thresholdMs],
      );
      for (const row of r.rows) {
        const query = row.query.replace(/\s+/g, ' ').trim().slice(0, 160);
        const key = `${this.phase}|${row.app}|${query.slice(0, 80)}`;
        const s = this.seen.get(key) ?? { application: `${row.app} [${this.phase}]`, longestMs: 0, samples: 0, query, waits: {} };
        s.longestMs = Math.max(s.longestMs, Number(row.ms));
        s.samples++;
        const wait = row.wait ?? 'cpu';
        s.waits[wait] = (s.waits[wait] ?? 0) + 1;
        this.seen.set(key, s);
      }
    } catch {
      /* diagnostics only */
    } finally {
      this.busy = false;
    }
  }

  async stop(): Promise<SlowStatement[]> {
    if (this.timer) clearInterval(this.timer);
    for (let i = 0; i < 40 && this.busy; i++) await new Promise((r) => setTimeout(r, 50));
    await this.client?.end().catch(() => undefined);
    return [...this.seen.values()].sort((a, b) => b.longestMs - a.longestMs).slice(0, 8);
  }
}
