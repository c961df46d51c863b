/**
 * The claim's exclusion of full endpoints' webhooks, measured as SQL. A worker whose lane for
 * an endpoint is full leaves that endpoint's webhooks out of its claims (up to 1,000 ids), and
 * their due rows lie in front of everyone else's in the due index. For 10, 100 and
 * BENCH_CLAIM_EXCLUDED webhooks left out (default 1,000), each with BENCH_CLAIM_BACKLOG due rows
 * (default 300), and one webhook with 500 due rows behind them, this times on the same database,
 * in one run: the read of due rows that walks past them, as the claim did before migration 0012,
 * with `webhook_id <> all($ids)` and with `webhook_id not in (select unnest($ids))` (hashed); and
 * the whole claim now (`deliveries.claimDue`, rolled back), which reads a bounded front of the
 * due index and, when rows left out fill it, steps from webhook to webhook instead.
 * One slow endpoint far behind: BENCH_CLAIM_EXCLUDED=10 BENCH_CLAIM_BACKLOG=30000.
 * The worker's session settings apply (QUEUE_SESSION_SETTINGS: generic plans of prepared statements).
 *
 *   node bench/dist/claim-exclusion.js      (DATABASE_URL, or an embedded PostgreSQL)
 */
import { deliveries, PREPARE, QUEUE_SESSION_SETTINGS, workspaces, type Db } from '@hookpost/db';
import { sql, type RawBuilder } from 'kysely';
import { envInt, log } from './common.js';
import { rolledBack, withScratchDatabase } from './scratch-db.js';

const LIMIT = 500;
const ROUNDS = 7;

async function main(): Promise<void> {
  const excludedMax = envInt('BENCH_CLAIM_EXCLUDED', 1000, 10, 10_000);
  const backlog = envInt('BENCH_CLAIM_BACKLOG', 300, 1, 100_000);
  // As the worker's sessions are: prepared statements run their generic plan, where the ids
  // are a parameter the planner does not see (with them seen, it hashes `<> all` too).
  await withScratchDatabase('claims', QUEUE_SESSION_SETTINGS, async (db) => {
    const { workspace, environment } = await workspaces.createWorkspace(db, 'claims');
    const hooks = await sql<{ id: string }>`
      insert into webhooks (id, workspace_id, environment_id, origin, hook_url, secret_encrypted)
      select hookpost_uuid_v7(), ${workspace.id}, ${environment.id}, 'hookpost', 'http://127.0.0.1:9/slow', '\\x00' from generate_series(1, ${excludedMax + 1})
      returning id`.execute(db);
    const ids = hooks.rows.map((r) => r.id);
    const healthy = ids.pop() as string;
    log(`setting up ${excludedMax} webhooks of one endpoint with ${backlog} due deliveries each, and one with ${LIMIT} behind them`);
    await sql`insert into deliveries (id, workspace_id, webhook_id, kind, payload, status, next_attempt_at)
              select hookpost_uuid_v7(), ${workspace.id}, w, 'test', '{}', 'pending', now() - interval '1 hour' + g * interval '1 ms'
              from unnest(${ids}::uuid[]) w, generate_series(1, ${backlog}) g`.execute(db);
    await sql`insert into deliveries (id, workspace_id, webhook_id, kind, payload, status, next_attempt_at)
              select hookpost_uuid_v7(), ${workspace.id}, ${healthy}, 'test', '{}', 'pending', now() - interval '1 second' from generate_series(1, ${LIMIT})`.execute(db);
    await sql`vacuum analyze`.execute(db);

    const rows: string[] = [];
    const cell = (ms: number) => ms.toFixed(1).padStart(9);
    for (const n of [10, 100, excludedMax].filter((x, i, a) => x <= excludedMax && a.indexOf(x) === i)) {
      const left = ids.slice(0, n);
      const all = await median(() => walk(db, sql`webhook_id <> all(${left}::uuid[])`, n === excludedMax));
      const notIn = await median(() => walk(db, sql`webhook_id not in (select unnest(${left}::uuid[]))`, n === excludedMax));
      const claim = await median(() => claimRolledBack(db, left, n === excludedMax));
      rows.push(`| ${`${n} webhooks left out`.padEnd(28)} | ${cell(all)} | ${cell(notIn)} | ${cell(claim)} |`);
    }
    const lines = [
      `\nClaim exclusion: ${excludedMax} webhooks × ${backlog} due rows in front, ${LIMIT} due behind; median of ${ROUNDS}, ms`,
      `| ${'claim of 500'.padEnd(28)} | ${'walk <>all'.padStart(9)} | ${'walk notin'.padStart(9)} | ${'claim now'.padStart(9)} |`,
      `|${'-'.repeat(30)}|${'-'.repeat(11)}|${'-'.repeat(11)}|`,
      ...rows,
      'walk: the read of due rows past those left out (the claim before migration 0012, without its locks and update);',
      'claim now: the whole claim statement, rolled back; it also locks and updates the 500 rows it takes, which is most of',
      'its time when little is left out (the first row); the claim before was that part plus the walk',
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  });
}

/** The walk: the read of due rows with this exclusion; with `all` left out, checks it reached the rows behind. */
async function walk(db: Db, notExcluded: RawBuilder<unknown>, reachesHealthy: boolean): Promise<void> {
  const r = await sql<{ n: number }>`${sql.raw(PREPARE)}
    select count(*)::int as n from (
      select id from deliveries where status = 'pending' and next_attempt_at <= now() and ${notExcluded}
      order by next_attempt_at limit ${LIMIT * 4}) c`.execute(db);
  if (reachesHealthy && r.rows[0]?.n !== LIMIT) throw new Error(`the read found ${String(r.rows[0]?.n)} rows, expected the ${LIMIT} behind`);
}

/** The whole claim statement, in a transaction rolled back, so that every round claims the same rows. */
async function claimRolledBack(db: Db, excludeWebhooks: string[], reachesHealthy: boolean): Promise<void> {
  const c = await rolledBack(db, (trx) => deliveries.claimDue(trx, { workerId: 'bench', limit: LIMIT, perWebhook: LIMIT, leaseMs: 60_000, excludeWebhooks }));
  const healthy = c.deliveries.filter((d) => !excludeWebhooks.includes(d.webhook_id)).length;
  if (c.deliveries.length !== LIMIT || (reachesHealthy && healthy !== LIMIT)) throw new Error(`claimed ${c.deliveries.length} (${healthy} not left out), expected ${LIMIT}`);
}

async function median(f: () => Promise<void>): Promise<number> {
  await f(); // warm
  const ms: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const t0 = performance.now();
    await f();
    ms.push(performance.now() - t0);
  }
  return ms.sort((a, b) => a - b)[Math.floor(ROUNDS / 2)] as number;
}

main().catch((err: unknown) => {
  process.stderr.write(`${String((err as Error)?.stack ?? err)}\n`);
  process.exit(1);
});
