/**
 * `pnpm bench`: Hookpost against a tuned pg-boss worker and the raw HTTP ceiling, in
 * one run on this machine. See bench/README.md for the method.
 *
 * Exit codes: 0 done (targets are reported, not enforced, unless BENCH_STRICT=1);
 * 1 a delivery was lost, badly signed or corrupted, or the run broke; 2 a target was
 * missed under BENCH_STRICT=1.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { adminQuery, startEmbeddedPostgres, type RunningPostgres } from '@hookpost/db';
import pg from 'pg';
import { log } from './common.js';
import { loadBenchConfig, type Contender, type Ctx, type SystemResult } from './context.js';
import { startHookpost } from './hookpost.js';
import { BenchFailure, type DrainResult } from './load.js';
import { startPgBoss } from './pgboss.js';
import { hostTicks, percent, ReceiverProc, stealShare, stopAll } from './procs.js';
import { runRaw, runRelay } from './raw.js';
import { renderReport, STEAL_WARNING, type Environment } from './report.js';
import { measureInTurns } from './turns.js';
import { renderVirtual, runVirtual, type VirtualResult } from './virtual.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const benchRoot = path.resolve(here, '..');
const repoRoot = path.resolve(benchRoot, '..');

async function postgresInfo(url: string): Promise<{ version: string; settings: string }> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const v = await c.query<{ server_version: string }>('show server_version');
    const s = await c.query<{ name: string; setting: string; unit: string | null }>(
      "select name, setting, unit from pg_settings where name in ('fsync','synchronous_commit','shared_buffers','max_connections') order by name",
    );
    const settings = s.rows
      .map((r) => (r.name === 'shared_buffers' ? `shared_buffers=${Math.round((Number(r.setting) * 8) / 1024)}MB` : `${r.name}=${r.setting}`))
      .join(', ');
    return { version: v.rows[0]?.server_version ?? '?', settings };
  } finally {
    await c.end();
  }
}

/** Each system starts without the other's dirty pages to write (best effort: needs superuser). */
async function checkpoint(url: string): Promise<void> {
  await adminQuery(url, 'checkpoint').catch((err: unknown) => log(`CHECKPOINT skipped: ${String((err as Error)?.message ?? err)}`));
}

/**
 * Before each measurement: fresh planner statistics in every system's database, then a
 * CHECKPOINT. Without the ANALYZE, a queue table that grew from empty to 100,000 rows in a
 * minute is planned with the statistics of the empty one until autovacuum gets to it; one
 * pg-boss (a) round fell from ~2,800 to 955/s that way.
 */
async function settle(serverUrl: string, contenders: readonly Contender[]): Promise<void> {
  for (const c of contenders) await adminQuery(c.databaseUrl, 'analyze');
  await checkpoint(serverUrl);
}

function gitDescribe(): string {
  try {
    const head = execFileSync('git', ['-C', repoRoot, 'log', '-1', '--format=%h %s'], { encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['-C', repoRoot, 'status', '--porcelain'], { encoding: 'utf8' })
      .split('\n')
      .map((l) => l.slice(3).trim())
      .filter((p) => p && !p.startsWith('bench/'));
    const areas = [...new Set(dirty.map((p) => p.split('/').slice(0, 2).join('/')))];
    return `${head.length > 90 ? `${head.slice(0, 90)}…` : head}${areas.length ? ` (+ uncommitted changes in ${areas.join(', ')})` : ''}`;
  } catch {
    return '(not a git checkout)';
  }
}

async function main(): Promise<number> {
  const cfg = loadBenchConfig();
  const run = randomBytes(4).toString('hex');
  const started = new Date();
  const hostAtStart = hostTicks();
  const logDir = path.join(benchRoot, '.runs', `${started.toISOString().replace(/[:.]/g, '-')}-${run}`);
  mkdirSync(logDir, { recursive: true });

  let embedded: RunningPostgres | undefined;
  let serverUrl = process.env.DATABASE_URL;
  let pgSource = 'DATABASE_URL';
  if (!serverUrl) {
    const dataDir = path.join(os.tmpdir(), 'hookpost-bench-pg');
    log(`DATABASE_URL unset: starting an embedded PostgreSQL in ${dataDir}`);
    const pgLog = createWriteStream(path.join(logDir, 'postgres.log'));
    embedded = await startEmbeddedPostgres({ dataDir, onNotice: (l) => log(l), onLog: (l) => pgLog.write(`${l}\n`) });
    stopEmbedded = embedded.stop;
    serverUrl = embedded.url;
    pgSource = 'embedded';
  }

  const require = createRequire(import.meta.url);
  const pgInfo = await postgresInfo(serverUrl);
  const cpus = os.cpus();
  const envInfo: Environment = {
    started: started.toISOString(),
    run,
    cpu: `${cpus[0]?.model ?? '?'} × ${cpus.length} (nproc ${os.availableParallelism()})`,
    memory: `${(os.totalmem() / 2 ** 30).toFixed(1)} GB`,
    os: `${os.type()} ${os.release()}`,
    node: process.version,
    postgres: `${pgInfo.version} (${pgSource}; ${pgInfo.settings})`,
    pgBoss: (require('pg-boss/package.json') as { version: string }).version,
    undici: (require('undici/package.json') as { version: string }).version,
    git: gitDescribe(),
    loadStart: os.loadavg().map((l) => l.toFixed(2)).join(' '),
    loadEnd: '',
    logDir: path.relative(repoRoot, logDir),
  };
  log(`run ${run}; logs in ${envInfo.logDir}; load average ${envInfo.loadStart}`);
  if ((os.loadavg()[0] ?? 0) > 0.5 * cpus.length) log(`WARNING: the machine is busy (load ${envInfo.loadStart}); numbers will be noisy`);
  // Over the start-up so far (embedded Postgres, the receiver to come): seconds of it.
  const stolenNow = stealShare(hostAtStart);
  if (stolenNow !== undefined && stolenNow > STEAL_WARNING) {
    log(`WARNING: the hypervisor is taking ${percent(stolenNow)} of this machine's CPU time (steal); numbers will be low and noisy`);
  }

  const receiver = await ReceiverProc.start();
  const ctx: Ctx = { run, serverUrl, receiver, logDir, repoRoot, cfg };
  const results: { raw?: DrainResult; relay?: DrainResult; pgboss?: SystemResult; hookpost?: SystemResult; virtual?: VirtualResult | { skipped: string } } = {};
  let failure: unknown;
  try {
    if (cfg.only.has('raw')) {
      log(`raw ceiling: ${cfg.rawEvents} signed POSTs, ${cfg.rawConnections} connections`);
      results.raw = await runRaw(ctx);
      log(`relay ceiling: ${cfg.singleEvents} events, one per request, ${cfg.clients} clients, no database`);
      results.relay = await runRelay(ctx);
    }
    const contenders: Contender[] = [];
    try {
      if (cfg.only.has('pgboss')) {
        await checkpoint(serverUrl);
        const pb = await startPgBoss(ctx);
        contenders.push(pb);
        results.pgboss = pb.result;
      }
      if (cfg.only.has('hookpost')) {
        await checkpoint(serverUrl);
        const hp = await startHookpost(ctx);
        if ('skipped' in hp) {
          results.hookpost = { name: 'Hookpost', notes: [], skipped: hp.skipped };
          log(`Hookpost SKIPPED: ${hp.skipped}`);
        } else {
          contenders.push(hp);
          results.hookpost = hp.result;
        }
      }
      await measureInTurns(cfg, contenders, () => settle(serverUrl, contenders));
    } finally {
      for (const c of contenders) {
        await c.finish().catch((err: unknown) => {
          failure ??= err;
        });
      }
    }
    if (cfg.only.has('virtual')) {
      await checkpoint(serverUrl);
      results.virtual = await runVirtual(ctx);
    }
  } catch (err) {
    failure = err;
  } finally {
    await receiver.stop();
    await stopAll();
    await embedded?.stop();
  }

  envInfo.loadEnd = os.loadavg().map((l) => l.toFixed(2)).join(' ');
  const steal = stealShare(hostAtStart);
  if (steal !== undefined) envInfo.stealShare = steal;
  const report = renderReport(envInfo, cfg, results);
  const virtualText = renderVirtual(results.virtual);
  const mainRan = ['raw', 'pgboss', 'hookpost'].some((p) => cfg.only.has(p));
  const text = (mainRan ? report.text : `Hookpost bench ${envInfo.run}: ${envInfo.git}; ${envInfo.cpu}; node ${envInfo.node}; postgres ${envInfo.postgres}\n`) + virtualText;
  const missed = [...report.missed];
  if (results.virtual && !('skipped' in results.virtual) && /MISSED/.test(virtualText)) missed.push('(g) virtual webhooks: every webhook polled each minute, lag p99 < 5 s');
  writeFileSync(path.join(logDir, 'results.json'), JSON.stringify({ env: envInfo, config: { ...cfg, only: [...cfg.only] }, results }, null, 2));
  writeFileSync(path.join(logDir, 'report.txt'), text);
  process.stdout.write(text);

  if (failure !== undefined) {
    const msg = failure instanceof Error ? (failure instanceof BenchFailure ? failure.message : (failure.stack ?? failure.message)) : String(failure);
    process.stderr.write(`\n*** BENCHMARK FAILED ***\n${msg}\n(logs: ${envInfo.logDir})\n`);
    return 1;
  }
  if (missed.length > 0 && process.env.BENCH_STRICT === '1') {
    process.stderr.write(`\nBENCH_STRICT=1: targets missed: ${missed.join('; ')}\n`);
    return 2;
  }
  return 0;
}

/** Stops the embedded server, if the run started one (for a signal mid-run). */
let stopEmbedded: (() => Promise<void>) | undefined;

// Ctrl-C or a kill: stop the children we started (Hookpost's processes would keep polling), then go.
let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    log(`${signal}: stopping child processes`);
    void stopAll(3000)
      .then(() => stopEmbedded?.())
      .finally(() => process.exit(130));
  });
}

main().then(
  (code) => process.exit(code),
  async (err: unknown) => {
    process.stderr.write(`\n*** BENCHMARK FAILED ***\n${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    await stopAll(3000).catch(() => undefined);
    process.exit(1);
  },
);
