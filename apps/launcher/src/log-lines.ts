const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
const SKIP = new Set(['level', 'time', 'pid', 'hostname', 'app', 'name', 'msg']);

/** One pino JSON line as a short human line; other text passes through. */
export function formatLogLine(app: string, line: string): string {
  try {
    const rec = JSON.parse(line) as Record<string, unknown>;
    const time = typeof rec.time === 'string' ? rec.time.slice(11, 19) : '';
    const level = LEVELS[Number(rec.level)] ?? 'INFO';
    const extra = Object.entries(rec)
      .filter(([k]) => !SKIP.has(k))
      .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
      .join(' ');
    return `${time} ${level.padEnd(5)} [${app}] ${String(rec.msg ?? '')}${extra ? ' ' + extra : ''}`;
  } catch {
    return `[${app}] ${line}`;
  }
}
