import { z } from 'zod';

/** Strings from the environment that mean true/false. */
const envBoolean = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

const port = z.coerce.number().int().min(0).max(65535);

/**
 * Every setting Hookpost reads from the environment, with defaults that run locally.
 * Parsed once per process by {@link loadConfig}; nothing else reads `process.env`.
 */
export const EnvSchema = z.object({
  NODE_ENV: z.enum(['development', 'test', 'production']).default('development'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),

  /** Postgres connection string. Unset: the launcher starts an embedded PostgreSQL. */
  DATABASE_URL: z.string().min(1).optional(),
  DATABASE_POOL_MAX: z.coerce.number().int().min(1).max(500).default(10),

  API_HOST: z.string().min(1).default('127.0.0.1'),
  API_PORT: port.default(3000),
  RECEIVER_HOST: z.string().min(1).default('127.0.0.1'),
  RECEIVER_PORT: port.default(4000),
  /** Signing secret(s) the mock receiver verifies with (comma-separated; `whsec_…` or raw). */
  RECEIVER_SECRETS: z.string().optional(),

  /** Made a valid key of the default workspace at start, so scripts can use a known key. */
  HOOKPOST_API_KEY: z.string().min(16).optional(),
  /** Bearer token for workspace administration (`POST /v1/workspaces`). Unset: disabled. */
  HOOKPOST_ADMIN_TOKEN: z.string().min(16).optional(),
  /** 32 bytes, base64: encrypts secrets and credentials at rest. Required in production. */
  HOOKPOST_ENCRYPTION_KEY: z
    .string()
    .refine((v) => Buffer.from(v, 'base64').length === 32, 'must be 32 bytes, base64-encoded')
    .optional(),
  /** Where local state (embedded Postgres data, generated keys) lives. */
  HOOKPOST_DATA_DIR: z.string().min(1).default('.hookpost'),

  /** Largest accepted request body, in bytes. */
  BODY_LIMIT_BYTES: z.coerce.number().int().min(1024).max(64 * 1024 * 1024).default(1024 * 1024),
  /** Smallest `interval` (minutes) a virtual webhook may ask for. */
  MIN_INTERVAL_MINUTES: z.coerce.number().positive().default(1),
  /** Set by the launcher: children stop when that process is gone (no orphans after a kill -9). */
  HOOKPOST_SUPERVISOR_PID: z.coerce.number().int().positive().optional(),
  /** Serve the rendered API docs at /docs. */
  DOCS_ENABLED: envBoolean.default('true'),
});

export type Env = z.infer<typeof EnvSchema>;

export class ConfigError extends Error {
  constructor(readonly issues: { variable: string; message: string }[]) {
    super(`Invalid configuration: ${issues.map((i) => `${i.variable}: ${i.message}`).join('; ')}`);
    this.name = 'ConfigError';
  }
}

/** A development-only key, used when HOOKPOST_ENCRYPTION_KEY is unset outside production. */
const DEV_ENCRYPTION_KEY = Buffer.from('hookpost-development-key-32bytes').toString('base64');

export interface Config {
  env: Env['NODE_ENV'];
  logLevel: Env['LOG_LEVEL'];
  databaseUrl: string | undefined;
  databasePoolMax: number;
  api: { host: string; port: number; bodyLimitBytes: number; docsEnabled: boolean };
  receiver: { host: string; port: number; secrets: string[] };
  bootstrapApiKey: string | undefined;
  adminToken: string | undefined;
  encryptionKey: Buffer;
  /** True when the encryption key is the built-in development key. */
  usingDevEncryptionKey: boolean;
  dataDir: string;
  minIntervalMinutes: number;
  supervisorPid: number | undefined;
}

/** Parses the environment once; throws {@link ConfigError} naming every bad variable. */
export function loadConfig(source: NodeJS.ProcessEnv = process.env): Readonly<Config> {
  const cleaned = Object.fromEntries(
    Object.entries(source).filter(([, v]) => v !== undefined && v !== ''),
  );
  const parsed = EnvSchema.safeParse(cleaned);
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((i) => ({ variable: String(i.path[0] ?? '?'), message: i.message })),
    );
  }
  const e = parsed.data;
  if (e.NODE_ENV === 'production' && !e.HOOKPOST_ENCRYPTION_KEY) {
    throw new ConfigError([
      { variable: 'HOOKPOST_ENCRYPTION_KEY', message: 'required when NODE_ENV=production' },
    ]);
  }
  const key = e.HOOKPOST_ENCRYPTION_KEY ?? DEV_ENCRYPTION_KEY;
  return Object.freeze({
    env: e.NODE_ENV,
    logLevel: e.LOG_LEVEL,
    databaseUrl: e.DATABASE_URL,
    databasePoolMax: e.DATABASE_POOL_MAX,
    api: {
      host: e.API_HOST,
      port: e.API_PORT,
      bodyLimitBytes: e.BODY_LIMIT_BYTES,
      docsEnabled: e.DOCS_ENABLED,
    },
    receiver: {
      host: e.RECEIVER_HOST,
      port: e.RECEIVER_PORT,
      secrets: (e.RECEIVER_SECRETS ?? '').split(',').map((s) => s.trim()).filter(Boolean),
    },
    bootstrapApiKey: e.HOOKPOST_API_KEY,
    adminToken: e.HOOKPOST_ADMIN_TOKEN,
    encryptionKey: Buffer.from(key, 'base64'),
    usingDevEncryptionKey: !e.HOOKPOST_ENCRYPTION_KEY,
    dataDir: e.HOOKPOST_DATA_DIR,
    minIntervalMinutes: e.MIN_INTERVAL_MINUTES,
    supervisorPid: e.HOOKPOST_SUPERVISOR_PID,
  });
}

/** Requires DATABASE_URL; for processes that never start their own Postgres. */
export function requireDatabaseUrl(config: Pick<Config, 'databaseUrl'>): string {
  if (!config.databaseUrl) {
    throw new ConfigError([
      { variable: 'DATABASE_URL', message: 'required (start everything with `pnpm start` to get an embedded Postgres)' },
    ]);
  }
  return config.databaseUrl;
}
