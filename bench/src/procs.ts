/**
 * Child processes of the bench: the receiver (IPC-controlled), the Hookpost API and
 * worker, the pg-boss worker. Every wait is bounded; every child is stopped at exit.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, readdirSync, readFileSync, type WriteStream } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { adminQuery } from '@hookpost/db';
import { log, nowUs, sleep, type PhaseConfig, type ReceiverStats } from './common.js';

const children = new Set<ChildProcess>();

/** Stops every child still running (SIGTERM, then SIGKILL after `graceMs`). */
export async function stopAll(graceMs = 10_000): Promise<void> {
  await Promise.all([...children].map((c) => stopChild(c, graceMs)));
}

export async function stopChild(child: ChildProcess, graceMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) {
    children.delete(child);
    return;
  }
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
  children.delete(child);
}

const here = path.dirname(fileURLToPath(import.meta.url));

/** Request/answer over a child's IPC channel: each message carries `req`, its answer the same. */
export class IpcChannel {
  private nextReq = 1;
  private readonly waiters = new Map<number, (m: Record<string, unknown>) => void>();

  constructor(
    readonly child: ChildProcess,
    private readonly name: string,
  ) {
    child.on('message', (m: Record<string, unknown>) => {
      const w = this.waiters.get(m.req as number);
      if (w) {
        this.waiters.delete(m.req as number);
        w(m);
      }
    });
  }

  call(msg: Record<string, unknown>, timeoutMs = 30_000): Promise<Record<string, unknown>> {
    const req = this.nextReq++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(req);
        reject(new Error(`${this.name} did not answer ${String(msg.type)} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.set(req, (m) => {
        clearTimeout(timer);
        resolve(m);
      });
      // A child that is gone fails the call (instead of an unhandled 'error' on the child).
      this.child.send({ ...msg, req }, (err) => {
        if (!err) return;
        clearTimeout(timer);
        this.waiters.delete(req);
        reject(new Error(`${this.name} is gone: ${err.message}`));
      });
    });
  }
}

/** Waits for a forked child's first message, `{type: 'ready', …}`, and returns it. */
export function readyMessage<T extends Record<string, unknown>>(child: ChildProcess, name: string, timeoutMs = 30_000, detail = () => ''): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} not ready within ${timeoutMs / 1000} s${detail()}`)), timeoutMs);
    child.once('message', (m: T) => {
      clearTimeout(timer);
      if (m.type === 'ready') resolve(m);
      else reject(new Error(`${name}: unexpected first message ${JSON.stringify(m)}`));
    });
    child.once('exit', (code) => reject(new Error(`${name} exited with ${code} during start${detail()}`)));
  });
}

export class ReceiverProc {
  private readonly ipc: IpcChannel;
  private constructor(
    readonly child: ChildProcess,
    readonly port: number,
  ) {
    this.ipc = new IpcChannel(child, 'receiver');
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  static async start(): Promise<ReceiverProc> {
    const execArgv = (process.env.BENCH_RECEIVER_NODE_ARGS ?? '').split(' ').filter(Boolean);
    const child = fork(path.join(here, 'receiver.js'), [], { execArgv, serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    children.add(child);
    const { port } = await readyMessage<{ port: number }>(child, 'receiver', 10_000);
    return new ReceiverProc(child, port);
  }

  private rpc(msg: Record<string, unknown>, timeoutMs = 30_000): Promise<Record<string, unknown>> {
    return this.ipc.call(msg, timeoutMs);
  }

  async reset(cfg: PhaseConfig | null): Promise<void> {
    await this.rpc({ type: 'reset', cfg });
  }

  async stats(withLatencies = false): Promise<ReceiverStats> {
    const m = await this.rpc({ type: 'stats', withLatencies });
    return m.stats as ReceiverStats;
  }

  /**
   * Polls until `expected` unique deliveries arrived. Fails when the total time exceeds
   * `timeoutMs` or nothing new arrives for `stallMs` (after `startedUs`).
   */
  async waitFor(expected: number, opts: { timeoutMs: number; stallMs: number; label: string; isAlive?: () => string | null }): Promise<ReceiverStats> {
    const started = Date.now();
    let lastUnique = -1;
    let lastProgress = Date.now();
    let lastReport = Date.now();
    for (let i = 0; i < 1_000_000; i++) {
      const s = await this.stats();
      if (s.failures > 0) return s; // the caller fails loudly with the samples
      if (s.unique >= expected) return s;
      if (s.unique !== lastUnique) {
        lastUnique = s.unique;
        lastProgress = Date.now();
      }
      const dead = opts.isAlive?.();
      if (dead) throw new Error(`${opts.label}: ${dead} (received ${s.unique}/${expected})`);
      if (Date.now() - lastProgress > opts.stallMs) {
        throw new Error(`${opts.label}: LOST DELIVERIES — no new delivery for ${opts.stallMs / 1000} s; received ${s.unique}/${expected} unique`);
      }
      if (Date.now() - started > opts.timeoutMs) {
        throw new Error(`${opts.label}: LOST DELIVERIES — timed out after ${opts.timeoutMs / 1000} s; received ${s.unique}/${expected} unique`);
      }
      if (Date.now() - lastReport > 5000) {
        log(`  ${opts.label}: ${s.unique}/${expected} received`);
        lastReport = Date.now();
      }
      await sleep(s.unique > expected * 0.95 ? 10 : 50);
    }
    throw new Error(`${opts.label}: wait loop bound reached`);
  }

  async stop(): Promise<void> {
    await this.rpc({ type: 'stop' }, 10_000).catch(() => undefined);
    await stopChild(this.child, 15_000);
  }
}

/** A long-running service process with its output captured to a log file. */
export class ServiceProc {
  readonly logFile: string;
  private readonly out: WriteStream;
  private tail: string[] = [];
  exitInfo: string | null = null;

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
    logDir: string,
  ) {
    this.logFile = path.join(logDir, `${name}.log`);
    this.out = createWriteStream(this.logFile);
    const collect = (c: Buffer) => {
      this.out.write(c);
      const lines = c.toString().split('\n').filter(Boolean);
      this.tail.push(...lines);
      if (this.tail.length > 40) this.tail.splice(0, this.tail.length - 40);
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    child.on('exit', (code, signal) => {
      this.exitInfo = `${name} exited (code ${code}, signal ${signal})`;
    });
  }

  static spawnNode(name: string, script: string, env: NodeJS.ProcessEnv, logDir: string, cwd?: string, nodeArgs: string[] = []): ServiceProc {
    const child = spawn(process.execPath, [...nodeArgs, script], { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    return new ServiceProc(name, child, logDir);
  }

  static forkNode(name: string, script: string, env: NodeJS.ProcessEnv, logDir: string): ServiceProc {
    const child = fork(script, [], { env, stdio: ['ignore', 'pipe', 'pipe', 'ipc'], serialization: 'advanced' });
    children.add(child);
    return new ServiceProc(name, child, logDir);
  }

  get pid(): number {
    return this.child.pid as number;
  }

  alive = (): string | null => (this.exitInfo ? `${this.exitInfo}; last output:\n${this.lastLines()}` : null);

  lastLines(n = 15): string {
    return this.tail.slice(-n).join('\n');
  }

  /** Lines of output that look like warnings or errors (pino JSON level ≥ 40). */
  problems(): number {
    try {
      const text = readFileSync(this.logFile, 'utf8');
      return text.split('\n').filter((l) => /"level":(4|5|6)\d/.test(l)).length;
    } catch {
      return 0;
    }
  }

  async stop(graceMs = 20_000): Promise<void> {
    await stopChild(this.child, graceMs);
    await new Promise<void>((r) => this.out.end(() => r()));
  }
}

/** Peak resident set size (VmHWM) and current RSS of a process, in MB; null when unreadable. */
export function memoryOf(pid: number): { hwmMb: number; rssMb: number } | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN);
    return { hwmMb: kb('VmHWM') / 1024, rssMb: kb('VmRSS') / 1024 };
  } catch {
    return null;
  }
}

/** CPU seconds (user + system) a process has used so far. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}

/** The machine's CPU time so far, from /proc/stat's first line (clock ticks, all CPUs). */
export interface HostTicks {
  total: number;
  steal: number;
}

export function hostTicks(): HostTicks {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
    // cpu  user nice system idle iowait irq softirq steal guest guest_nice (guest is inside user)
    const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = line.trim().split(/\s+/).slice(1).map(Number);
    return { total: user + nice + system + idle + iowait + irq + softirq + steal, steal };
  } catch {
    return { total: 0, steal: 0 };
  }
}

/**
 * The share of the machine's CPU time taken by the hypervisor for other guests (steal)
 * between two readings: on a shared VM, the cores the bench's processes could not have.
 */
export function stealShare(from: HostTicks, to: HostTicks = hostTicks()): number | undefined {
  const total = to.total - from.total;
  return total > 0 ? (to.steal - from.steal) / total : undefined;
}

/** CPU seconds used so far by every PostgreSQL process on this machine, by pid. */
function postgresCpu(): Map<number, number> {
  const out = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (readFileSync(`/proc/${name}/comm`, 'utf8').trim() !== 'postgres') continue;
      out.set(Number(name), cpuSeconds(Number(name)));
    } catch {
      /* gone meanwhile */
    }
  }
  return out;
}

/** What each postgres process is: its application_name, else its backend type (walwriter, autovacuum worker…). */
async function postgresLabels(serverUrl: string): Promise<Map<number, string>> {
  const rows = await adminQuery<{ pid: number; label: string }>(
    serverUrl,
    "select pid, coalesce(nullif(application_name, ''), backend_type) as label from pg_stat_activity",
  );
  return new Map(rows.map((row) => [row.pid, row.label]));
}

/**
 * Where a phase's CPU went: the named processes, the postgres processes by what they
 * serve (backends that started meanwhile count whole) and this driver. Diagnostics for the log.
 */
export class CpuMeter {
  private readonly startUs = nowUs();
  private readonly host = hostTicks();
  private readonly own = process.cpuUsage();
  private readonly pg = postgresCpu();
  private readonly named: Record<string, number>;
  private labels = new Map<number, string>();
  private walStart: string | undefined;
  private constructor(
    private readonly pids: Record<string, number>,
    private readonly serverUrl: string,
  ) {
    this.named = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, safeCpu(pid)]));
  }

  static async start(pids: Record<string, number>, serverUrl: string): Promise<CpuMeter> {
    const m = new CpuMeter(pids, serverUrl);
    m.labels = await postgresLabels(serverUrl).catch(() => new Map<number, string>());
    m.walStart = await walPosition(serverUrl).catch(() => undefined);
    return m;
  }

  /** CPU seconds of each process and of Postgres by label, over the wall time since the start. */
  async measure(): Promise<CpuUsage> {
    const wallSeconds = (nowUs() - this.startUs) / 1e6;
    const pgNow = postgresCpu();
    const own = process.cpuUsage(this.own);
    const processes: Record<string, number> = {};
    for (const [k, pid] of Object.entries(this.pids)) processes[k] = safeCpu(pid) - (this.named[k] ?? 0);
    processes.driver = (own.user + own.system) / 1e6;
    const labels = new Map([...this.labels, ...(await postgresLabels(this.serverUrl).catch(() => new Map<number, string>()))]);
    const postgres: Record<string, number> = {};
    for (const [pid, s] of pgNow) {
      const used = s - (this.pg.get(pid) ?? 0);
      if (used <= 0) continue;
      const label = labels.get(pid) ?? 'postgres (other)';
      postgres[label] = (postgres[label] ?? 0) + used;
    }
    const walBytes = this.walStart ? await walSince(this.serverUrl, this.walStart).catch(() => undefined) : undefined;
    const steal = stealShare(this.host);
    return { wallSeconds, processes, postgres, ...(walBytes !== undefined ? { walBytes } : {}), ...(steal !== undefined ? { stealShare: steal } : {}) };
  }
}

/** The server's current WAL insert position (an LSN, as text). */
async function walPosition(serverUrl: string): Promise<string> {
  const [row] = await adminQuery<{ lsn: string }>(serverUrl, 'select pg_current_wal_insert_lsn()::text as lsn');
  return String(row?.lsn);
}

/** WAL bytes written by the whole server since `lsn`. */
async function walSince(serverUrl: string, lsn: string): Promise<number> {
  const [row] = await adminQuery<{ bytes: number }>(serverUrl, 'select pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1::pg_lsn)::float8 as bytes', [lsn]);
  return Number(row?.bytes);
}

/** Where a phase's CPU went, in seconds. */
export interface CpuUsage {
  wallSeconds: number;
  /** The named processes, and `driver` (this process). */
  processes: Record<string, number>;
  /** Postgres processes by application_name (else backend type). */
  postgres: Record<string, number>;
  /** WAL the server wrote over the phase (only one system runs at a time), bytes. */
  walBytes?: number;
  /** Share of the machine's CPU time stolen by the hypervisor over the phase (0–1). */
  stealShare?: number;
}

/** The bench's own processes: the driver (load and bookkeeping), the verifying receiver, the slow-query sampler. */
const HARNESS_PROCESSES = new Set(['driver', 'receiver']);
const HARNESS_POSTGRES = new Set(['bench-sampler']);

const sum = (o: Record<string, number>, keep: (k: string) => boolean) =>
  Object.entries(o).reduce((acc, [k, v]) => (keep(k) ? acc + v : acc), 0);

/**
 * CPU seconds of the system under test (its processes and every Postgres process but the
 * bench's sampler) and of the harness (driver, receiver, sampler). pg-boss's producer runs
 * inside the driver, so its client-side CPU counts as harness: the split favours pg-boss.
 */
export function splitCpu(u: CpuUsage): { system: number; harness: number } {
  return {
    system: sum(u.processes, (k) => !HARNESS_PROCESSES.has(k)) + sum(u.postgres, (k) => !HARNESS_POSTGRES.has(k)),
    harness: sum(u.processes, (k) => HARNESS_PROCESSES.has(k)) + sum(u.postgres, (k) => HARNESS_POSTGRES.has(k)),
  };
}

/** `CPU s over 8.4 s wall: worker 5.2, receiver 2.3, …; postgres 4.7 [hookpost-worker 3.4, …]; total 13.6 (1.62 cores)` */
export function formatCpu(u: CpuUsage): string {
  const fmt = (o: Record<string, number>) =>
    Object.entries(o)
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `${k} ${v.toFixed(1)}`)
      .join(', ');
  const pgTotal = sum(u.postgres, () => true);
  const total = sum(u.processes, () => true) + pgTotal;
  return `CPU s over ${u.wallSeconds.toFixed(1)} s wall: ${fmt(u.processes)}; postgres ${pgTotal.toFixed(1)} [${fmt(u.postgres)}]; total ${total.toFixed(1)} (${(total / u.wallSeconds).toFixed(2)} cores)${u.walBytes !== undefined ? `; WAL ${(u.walBytes / 2 ** 20).toFixed(1)} MiB` : ''}${u.stealShare !== undefined ? `; host steal ${percent(u.stealShare)}` : ''}`;
}

export const percent = (share: number) => `${(share * 100).toFixed(0)} %`;

function safeCpu(pid: number): number {
  try {
    return cpuSeconds(pid);
  } catch {
    return 0;
  }
}

export { nowUs };
