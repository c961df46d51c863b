import type { BenchConfig, SystemResult, Throughput } from './context.js';
import type { DrainResult } from './load.js';
import { median, medianRatio } from './turns.js';
import { percent } from './procs.js';

export interface Environment {
  started: string;
  run: string;
  cpu: string;
  memory: string;
  os: string;
  node: string;
  postgres: string;
  pgBoss: string;
  undici: string;
  git: string;
  logDir: string;
  loadStart: string;
  loadEnd: string;
  /** Share of the machine's CPU time stolen by the hypervisor over the whole run (0–1). */
  stealShare?: number;
}

/** Above this share of stolen CPU time a run is flagged: its figures reflect a crowded host. */
export const STEAL_WARNING = 0.05;

const int = (n: number | undefined) => (n === undefined || !Number.isFinite(n) ? '—' : Math.round(n).toLocaleString('en-US'));
const ms = (n: number | undefined) => (n === undefined || !Number.isFinite(n) ? '—' : n < 10 ? n.toFixed(2) : n < 100 ? n.toFixed(1) : Math.round(n).toLocaleString('en-US'));
const mb = (n: number | undefined) => (n === undefined || !Number.isFinite(n) ? '—' : n.toFixed(0));
const times = (n: number | undefined) => (n === undefined || !Number.isFinite(n) ? '—' : `${n >= 10 ? n.toFixed(0) : n.toFixed(2)}×`);

function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  const line = (r: string[]) => `| ${r.map((c, i) => (i === 0 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number))).join(' | ')} |`;
  const sep = `|${widths.map((w, i) => (i === 0 ? `:${'-'.repeat(w + 1)}` : `${'-'.repeat(w + 1)}:`)).join('|')}|`;
  return [line(rows[0] as string[]), sep, ...rows.slice(1).map(line)].join('\n');
}

/** The report, and the targets missed (for BENCH_STRICT). */
export function renderReport(
  env: Environment,
  cfg: BenchConfig,
  r: { raw?: DrainResult; relay?: DrainResult; pgboss?: SystemResult; hookpost?: SystemResult },
): { text: string; missed: string[] } {
  const hp = r.hookpost?.skipped ? undefined : r.hookpost;
  const pb = r.pgboss;
  const rawRate = r.raw ? r.raw.expected / r.raw.drainSeconds : undefined;
  const relayRate = r.relay ? r.relay.expected / r.relay.drainSeconds : undefined;
  const shareOf = (a: number | undefined, ceiling: number | undefined) => (a !== undefined && ceiling ? `${((a / ceiling) * 100).toFixed(0)}%` : '—');
  const missed: string[] = [];
  const verdict = (ok: boolean | undefined, what: string) => {
    if (ok === undefined) return '—';
    if (!ok) missed.push(what);
    return ok ? 'met' : 'MISSED';
  };
  const div = (a: number | undefined, b: number | undefined) => (a !== undefined && b !== undefined && b > 0 ? a / b : undefined);

  const aRatio = medianRatio(hp?.batchRounds, pb?.batchRounds);
  const bRatio = medianRatio(hp?.singleRounds, pb?.singleRounds);
  const spread = (rounds: readonly Throughput[] | undefined) =>
    rounds && rounds.length > 1 ? `${int(Math.min(...rounds.map((t) => t.deliveredPerSec)))}–${int(Math.max(...rounds.map((t) => t.deliveredPerSec)))}` : '';
  const ratioSpread = (a: readonly Throughput[] | undefined, b: readonly Throughput[] | undefined) => {
    if (!a || !b || a.length < 2) return '';
    const r = a.slice(0, b.length).map((x, i) => x.deliveredPerSec / (b[i] as Throughput).deliveredPerSec);
    return `${times(Math.min(...r))}–${times(Math.max(...r))}`;
  };
  /** The median over the rounds that have it of one per-round figure. */
  const medianOf = (rounds: readonly Throughput[] | undefined, pick: (t: Throughput) => number | undefined) => {
    const got = (rounds ?? []).map(pick).filter((x) => x !== undefined);
    return got.length ? median(got) : undefined;
  };
  const cpuOf = (rounds: readonly Throughput[] | undefined) => {
    const system = medianOf(rounds, (t) => t.cpuUsPerDelivery?.system);
    const harness = medianOf(rounds, (t) => t.cpuUsPerDelivery?.harness);
    return system === undefined || harness === undefined ? undefined : { system, harness, cores: medianOf(rounds, (t) => t.coresBusy) };
  };
  const cpuCell = (c: { system: number; harness: number; cores?: number } | undefined) =>
    c ? `${int(c.system)} / ${int(c.harness)}${c.cores !== undefined ? ` (${c.cores.toFixed(2)} cores)` : ''}` : '—';
  const cpuRow = (hpRounds: readonly Throughput[] | undefined, pbRounds: readonly Throughput[] | undefined): string[] => {
    const h = cpuOf(hpRounds);
    const b = cpuOf(pbRounds);
    return ['    CPU µs per delivery: system / harness (cores busy)', cpuCell(h), cpuCell(b), '', times(div(b?.system, h?.system)), '', ''];
  };
  const walRow = (hpRounds: readonly Throughput[] | undefined, pbRounds: readonly Throughput[] | undefined): string[] => {
    const h = medianOf(hpRounds, (t) => t.walBytesPerDelivery);
    const b = medianOf(pbRounds, (t) => t.walBytesPerDelivery);
    return ['    WAL bytes per delivery', int(h), int(b), '', times(div(b, h)), '', ''];
  };
  const stealRow = (hpRounds: readonly Throughput[] | undefined, pbRounds: readonly Throughput[] | undefined): string[] => {
    const cell = (rounds: readonly Throughput[] | undefined) => {
      const v = medianOf(rounds, (t) => t.stealShare);
      return v === undefined ? '—' : percent(v);
    };
    return ['    host CPU stolen by the hypervisor', cell(hpRounds), cell(pbRounds), '', '', '', ''];
  };
  const p99Ratio = div(pb?.latency?.p99, hp?.latency?.p99);
  const p50Ratio = div(pb?.latency?.p50, hp?.latency?.p50);
  const rssRatio = div(pb?.workerHwmMb, hp?.workerHwmMb);
  const pbRateNote = pb?.latency && pb.latency.targetRate !== hp?.latency?.targetRate ? ` (pg-boss at ${pb.latency.targetRate}/s)` : '';

  const rows: string[][] = [
    ['Metric', 'Hookpost', 'pg-boss', 'raw HTTP', 'Hookpost advantage', 'Target', 'Verdict'],
    [
      `(a) batch ingest (${cfg.batchSize}/req) → drained, deliveries/s`,
      int(hp?.batch?.deliveredPerSec),
      `${int(pb?.batch?.deliveredPerSec)} bulk`,
      int(rawRate),
      times(aRatio),
      '≥ 2× pg-boss bulk',
      verdict(aRatio === undefined ? undefined : aRatio >= 2, '(a) batch drain ≥ 2× pg-boss bulk'),
    ],
    [`    ${cfg.rounds} rounds, lowest–highest`, spread(hp?.batchRounds), spread(pb?.batchRounds), '', ratioSpread(hp?.batchRounds, pb?.batchRounds), '', ''],
    ['    ingest accepted, events/s', int(hp?.batch?.ingestPerSec), int(pb?.batch?.ingestPerSec), '', times(div(hp?.batch?.ingestPerSec, pb?.batch?.ingestPerSec)), '', ''],
    cpuRow(hp?.batchRounds, pb?.batchRounds),
    walRow(hp?.batchRounds, pb?.batchRounds),
    stealRow(hp?.batchRounds, pb?.batchRounds),
    [
      `(b) 1 event/request, ${cfg.clients} clients → delivered/s`,
      int(hp?.single?.deliveredPerSec),
      `${int(pb?.single?.deliveredPerSec)} 1 insert/event`,
      relayRate === undefined ? '' : `${int(relayRate)} relay`,
      times(bRatio),
      '≥ 5× pg-boss 1/event',
      verdict(bRatio === undefined ? undefined : bRatio >= 5, '(b) one-per-request ≥ 5× pg-boss one-insert-per-event'),
    ],
    [`    ${cfg.rounds} rounds, lowest–highest`, spread(hp?.singleRounds), spread(pb?.singleRounds), '', ratioSpread(hp?.singleRounds, pb?.singleRounds), '', ''],
    ['    ingest accepted, events/s', int(hp?.single?.ingestPerSec), int(pb?.single?.ingestPerSec), '', times(div(hp?.single?.ingestPerSec, pb?.single?.ingestPerSec)), '', ''],
    cpuRow(hp?.singleRounds, pb?.singleRounds),
    walRow(hp?.singleRounds, pb?.singleRounds),
    stealRow(hp?.singleRounds, pb?.singleRounds),
    [`(c) latency @ ${cfg.rate}/s${pbRateNote}, p50 ms`, ms(hp?.latency?.p50), ms(pb?.latency?.p50), '', times(p50Ratio), '', ''],
    [
      '    p99 ms',
      ms(hp?.latency?.p99),
      ms(pb?.latency?.p99),
      '',
      times(p99Ratio),
      '< 25 ms',
      verdict(hp?.latency ? hp.latency.p99 < 25 : undefined, `(c) p99 < 25 ms at ${cfg.rate}/s`),
    ],
    ['    p99.9 / max ms', hp?.latency ? `${ms(hp.latency.p999)} / ${ms(hp.latency.max)}` : '—', pb?.latency ? `${ms(pb.latency.p999)} / ${ms(pb.latency.max)}` : '—', '', '', '', ''],
    [
      '    of which ingest call (202 / send) p50 / p99 ms',
      hp?.latency ? `${ms(hp.latency.ackP50)} / ${ms(hp.latency.ackP99)}` : '—',
      pb?.latency ? `${ms(pb.latency.ackP50)} / ${ms(pb.latency.ackP99)}` : '—',
      '',
      '',
      '',
      '',
    ],
    [
      `    lead-in (first ${cfg.steadyLeadSeconds} s, not above) p50 / p99 ms`,
      hp?.latency ? `${ms(hp.latency.leadP50)} / ${ms(hp.latency.leadP99)}` : '—',
      pb?.latency ? `${ms(pb.latency.leadP50)} / ${ms(pb.latency.leadP99)}` : '—',
      '',
      '',
      '',
      '',
    ],
    ['    achieved send rate /s', int(hp?.latency?.achievedRate), int(pb?.latency?.achievedRate), '', '', '', ''],
    [
      `(d) fan-out 1 event → ${int(hp?.fanout?.webhooks ?? cfg.fanout)} webhooks: commit (202) ms`,
      ms(hp?.fanout?.commitMs),
      `${ms(pb?.fanout?.commitMs)}${pb?.fanout ? ' 1 insert' : ''}`,
      '',
      times(div(pb?.fanout?.commitMs, hp?.fanout?.commitMs)),
      '< 1,000 ms',
      verdict(hp?.fanout ? hp.fanout.commitMs < 1000 : undefined, '(d) fan-out commit < 1 s'),
    ],
    ['    all delivered, ms', ms(hp?.fanout?.deliverAllMs), ms(pb?.fanout?.deliverAllMs), '', times(div(pb?.fanout?.deliverAllMs, hp?.fanout?.deliverAllMs)), '', ''],
    [
      '    deliveries/s',
      int(hp?.fanout ? hp.fanout.webhooks / (hp.fanout.deliverAllMs / 1000) : undefined),
      int(pb?.fanout ? pb.fanout.webhooks / (pb.fanout.deliverAllMs / 1000) : undefined),
      '',
      '',
      '',
      '',
    ],
    [
      '(e) worker peak RSS (VmHWM), MB',
      mb(hp?.workerHwmMb),
      mb(pb?.workerHwmMb),
      '',
      times(rssRatio),
      '< 200 MB',
      verdict(hp?.workerHwmMb !== undefined ? hp.workerHwmMb < 200 : undefined, '(e) worker RSS < 200 MB'),
    ],
    ['    before fan-out / API process', `${mb(hp?.workerHwmBeforeFanoutMb)} / ${mb(hp?.apiHwmMb)}`, '', '', '', '', ''],
    [`(f) raw signed POSTs, no DB, ${cfg.rawConnections} conns, /s`, '', '', int(rawRate), '', '', ''],
    ['    (a) as share of raw ceiling', shareOf(hp?.batch?.deliveredPerSec, rawRate), shareOf(pb?.batch?.deliveredPerSec, rawRate), '', '', '', ''],
    [`(f) relay: 1 event/request, ${cfg.clients} clients, 202 + signed forward, no DB, /s`, '', '', int(relayRate), '', '', ''],
    ['    (b) as share of relay ceiling', shareOf(hp?.single?.deliveredPerSec, relayRate), shareOf(pb?.single?.deliveredPerSec, relayRate), '', '', '', ''],
    ['    (b) target (5× pg-boss) as share of relay ceiling', shareOf(pb?.single ? pb.single.deliveredPerSec * 5 : undefined, relayRate), '', '', '', '', ''],
    [
      'duplicates within each phase (a/b/c/d)',
      hp ? [hp.batch?.duplicates, hp.single?.duplicates, hp.latency?.duplicates, hp.fanout?.duplicates].map((d) => int(d)).join('/') : '—',
      pb ? [pb.batch?.duplicates, pb.single?.duplicates, pb.latency?.duplicates, pb.fanout?.duplicates].map((d) => int(d)).join('/') : '—',
      r.raw ? int(r.raw.stats.duplicateIds + r.raw.stats.duplicateEvents) : '',
      '',
      'reported',
      '',
    ],
    [
      're-deliveries after their phase ended',
      hp?.late ? int(hp.late.lateDuplicates + hp.late.stray) : '—',
      pb?.late ? int(pb.late.lateDuplicates + pb.late.stray) : '—',
      '',
      '',
      'reported',
      '',
    ],
  ];

  const out: string[] = [];
  out.push('');
  out.push(`Hookpost benchmark — run ${env.run}, ${env.started}`);
  out.push(`Machine : ${env.cpu}, ${env.memory} RAM, ${env.os}`);
  out.push(`Node    : ${env.node}   Postgres: ${env.postgres}`);
  out.push(`Load avg: ${env.loadStart} at start, ${env.loadEnd} at end (1/5/15 min; other work on the machine skews results)`);
  if (env.stealShare !== undefined) {
    out.push(
      `Steal   : ${percent(env.stealShare)} of the machine's CPU time over the run went to other guests of the hypervisor` +
        (env.stealShare > STEAL_WARNING ? ' (WARNING: the processes had that much less of the cores; compare such a run only with itself)' : ''),
    );
  }
  out.push(`Baseline: pg-boss ${env.pgBoss}, undici ${env.undici}   Repo: ${env.git}`);
  out.push(
    `Workload: (a) ${int(cfg.events)} events, (b) ${int(cfg.singleEvents)} events (each ${cfg.rounds} rounds, the systems taking turns; median shown), (c) ${cfg.steadyLeadSeconds} s lead-in + ${cfg.steadySeconds} s open loop, (d) ${int(cfg.fanout)} webhooks, ` +
      `(f) ${int(cfg.rawEvents)} POSTs; ${int(cfg.warmup)} warm-up events per system; 1 webhook in (a)–(c)`,
  );
  if (pb) out.push(`pg-boss : ${pb.notes.join('; ')}`);
  if (r.hookpost?.skipped) out.push(`Hookpost: SKIPPED — ${r.hookpost.skipped}`);
  if (r.hookpost?.logProblems) {
    const p = Object.entries(r.hookpost.logProblems).filter(([, n]) => n > 0);
    if (p.length > 0) out.push(`Hookpost: warnings/errors logged: ${p.map(([k, n]) => `${k} ${n}`).join(', ')} (see ${env.logDir})`);
  }
  if (r.hookpost?.notes.length) out.push(`Hookpost: ${r.hookpost.notes.join('; ')}`);
  out.push('Every delivery was signature-verified (Hookpost: Standard Webhooks + X-Truto-Signature) and body-checked by the receiver.');
  out.push('"Hookpost advantage": throughput Hookpost ÷ pg-boss; latency and RSS pg-boss ÷ Hookpost (higher is better for Hookpost).');
  out.push('');
  out.push(table(rows));
  out.push('');
  for (const sys of [hp, pb]) {
    if (!sys?.slowStatements?.length) continue;
    out.push(`${sys.name}: statements seen running > 500 ms (pg_stat_activity sampled every 250 ms; longest, samples (wait events), app [phase]):`);
    for (const st of sys.slowStatements) {
      const waits = Object.entries(st.waits ?? {})
        .sort((a, b) => b[1] - a[1])
        .map(([w, n]) => `${w}×${n}`)
        .join(' ');
      out.push(`  ${ms(st.longestMs).padStart(7)} ms, seen ${st.samples}× (${waits}) ${st.application}: ${st.query}`);
    }
    out.push('');
  }
  out.push(missed.length === 0 ? 'Targets: all reported targets met.' : `Targets missed: ${missed.join('; ')}`);
  out.push(`Logs and results.json: ${env.logDir}`);
  out.push('');
  return { text: out.join('\n'), missed };
}
