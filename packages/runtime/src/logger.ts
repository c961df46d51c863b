import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger } from 'pino';

/** Paths that may carry secrets; pino replaces their values with "[redacted]". */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-admin-token"]',
  'res.headers["set-cookie"]',
  '*.secret',
  '*.password',
  '*.db_url',
  '*.api_key',
  '*.key',
  '*.token',
  '*.access_token',
  '*.refresh_token',
];

/** The root logger of one process: JSON lines, secrets redacted, named after the app. */
export function createLogger(name: string, level: LoggerOptions['level'] = 'info'): Logger {
  return pino({
    name,
    level,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    base: { app: name, pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}
