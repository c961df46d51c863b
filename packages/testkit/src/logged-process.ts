import { spawn, type ChildProcess } from 'node:child_process';

export interface LoggedProcess {
  child: ChildProcess;
  /** Every JSON (pino) line it printed on stdout so far. */
  lines: Record<string, unknown>[];
  /** The first line with this `msg`, waiting up to `timeoutMs` for it. */
  waitFor(msg: string, timeoutMs?: number): Promise<Record<string, unknown>>;
}

/** Runs `node <entry>` with `env` added, collecting its structured log lines. */
export function spawnLogged(entry: string, env: Record<string, string>): LoggedProcess {
  const child = spawn(process.execPath, [entry], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: Record<string, unknown>[] = [];
  let buffer = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    buffer += chunk.toString();
    const parts = buffer.split('\n');
    buffer = parts.pop() ?? '';
    for (const p of parts) if (p.trim()) lines.push(JSON.parse(p) as Record<string, unknown>);
  });
  const waitFor = async (msg: string, timeoutMs = 15_000) => {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const hit = lines.find((l) => l.msg === msg);
      if (hit) return hit;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`${entry} never logged "${msg}": ${JSON.stringify(lines)}`);
  };
  return { child, lines, waitFor };
}
