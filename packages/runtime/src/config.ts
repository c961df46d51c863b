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
  /**
   * A statement unanswered this long closes its connection and fails (the API answers 503;
   * the worker's loops retry on another session). Statements take milliseconds; a half-open
   * connection (a peer gone without a FIN or RST, a failover that moved the address) would
   * otherwise hold its request, claim loop or poll run until TCP gives up, ~15 min.
   * Migrations run on sessions of their own, outside it.
   */
  DATABASE_QUERY_TIMEOUT_MS: z.coerce.number().int().min(100).max(3_600_000).default(120_000),

  API_HOST: z.string().min(1).default('127.0.0.1'),
  API_PORT: port.default(3000),
  RECEIVER_HOST: z.string().min(1).default('127.0.0.1'),
  RECEIVER_PORT: port.default(4000),
  /** Where `pnpm start` runs the mock provider (a demo source for virtual webhooks). */
  MOCK_PROVIDER_PORT: port.default(4700),
  /** Signing secret(s) the mock receiver verifies with (comma-separated; `whsec_…` or raw). */
  RECEIVER_SECRETS: z.string().optional(),

  /** Made a valid key of the default workspace at start, so scripts can use a known key. */
  HOOKPOST_API_KEY: z.string().min(16).optional(),
  /** Bearer token for workspace administration (`POST /v1/admin/workspaces`). Unset: disabled. */
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
  /** CIDRs deliveries may reach although private/loopback (e.g. `127.0.0.0/8,::1/128` locally). */
  HOOKPOST_SSRF_ALLOWLIST: z.string().optional(),

  /**
   * Ingest group commit: at most this many ingest transactions run at once; requests
   * arriving meanwhile share the next one. A fixed wait before each group (ms) can be added.
   */
  INGEST_COMMITS_IN_FLIGHT: z.coerce.number().int().min(1).max(64).default(4),
  INGEST_GROUP_COMMIT_MS: z.coerce.number().min(0).max(100).default(0),
  INGEST_GROUP_COMMIT_MAX: z.coerce.number().int().min(1).max(5000).default(500),
  /** Body cap for POST /v1/events/batch (up to 1000 events). */
  EVENTS_BATCH_BODY_LIMIT_BYTES: z.coerce.number().int().min(1024).max(256 * 1024 * 1024).default(16 * 1024 * 1024),

  /** Deliveries in flight per worker process. */
  DELIVERY_CONCURRENCY: z.coerce.number().int().min(1).max(10_000).default(512),
  /**
   * Deliveries in flight per endpoint (one URL without its query, however many webhooks
   * point at it) per worker for an endpoint that is slow or failing (a slow endpoint holds
   * no more than this); a fast one grows to 8 ×, a failing one halves.
   */
  DELIVERY_PER_ENDPOINT_CONCURRENCY: z.coerce.number().int().min(1).max(1000).default(32),
  /**
   * Webhooks of full endpoints (their sends and queue here at their cap) a claim leaves out by
   * id; what a claim still brings for a full endpoint goes back due at once while its webhooks
   * fit, postponed to about when it will have room when they do not (an endpoint behind more
   * webhooks than this).
   */
  DELIVERY_CLAIM_EXCLUDE_MAX: z.coerce.number().int().min(0).max(10_000).default(1000),
  DELIVERY_BATCH_SIZE: z.coerce.number().int().min(1).max(5000).default(500),
  DELIVERY_TIMEOUT_MS: z.coerce.number().int().min(100).max(300_000).default(15_000),
  DELIVERY_CONNECT_TIMEOUT_MS: z.coerce.number().int().min(50).max(60_000).default(5_000),
  /**
   * A claimed delivery whose worker vanished is retried after this long. A claim may
   * wait behind two rounds of sends to its endpoint, so the default is 3 × timeout + 30 s.
   */
  DELIVERY_LEASE_MS: z.coerce.number().int().min(500).max(3_600_000).optional(),
  /** How often the worker's idle LISTEN connection is checked (and replaced if it does not answer in as long). */
  DELIVERY_LISTEN_HEARTBEAT_MS: z.coerce.number().int().min(100).max(600_000).default(15_000),

  /** `fibonacci` (unified.to's: Fibonacci minutes, 20 retries), `fibonacci:N`, or seconds `5,30,300`. */
  RETRY_SCHEDULE: z
    .string()
    .regex(/^\s*(fibonacci(:\d+)?|\d+(\.\d+)?(\s*,\s*\d+(\.\d+)?)*)\s*$/, 'must be "fibonacci", "fibonacci:N" or comma-separated seconds (e.g. 5,30,300)')
    .default('fibonacci'),
  RETRY_JITTER: z.coerce.number().min(0).max(1).default(0.1),
  /** Multiplies every retry delay; e.g. 0.001 turns minutes into milliseconds for tests. */
  RETRY_TIME_SCALE: z.coerce.number().positive().max(1000).default(1),
  RETRY_AFTER_MAX_SECONDS: z.coerce.number().positive().default(3600),

  /** Consecutive failed attempts that mark a webhook unhealthy. */
  HEALTH_FAILURE_THRESHOLD: z.coerce.number().int().min(1).default(5),
  /** A webhook failing without a success for this long is paused. */
  HEALTH_PAUSE_AFTER_SECONDS: z.coerce.number().min(0).default(24 * 3600),

  /** Virtual webhooks: connections polled at once per worker process. */
  POLL_CONCURRENCY: z.coerce.number().int().min(1).max(1000).default(64),
  /** `interval` (minutes) of a virtual webhook that sets none. */
  POLL_DEFAULT_INTERVAL_MINUTES: z.coerce.number().positive().default(60),
  /** Spread of each next run: ± this fraction of the interval (at most 30 s). */
  POLL_JITTER: z.coerce.number().min(0).max(0.5).default(0.05),
  /** Each incremental run re-lists this much before the high-water mark (late commits at the source). */
  POLL_OVERLAP_MS: z.coerce.number().int().min(0).max(86_400_000).default(30_000),
  /** Records per delivered page when a webhook sets no `page_max_limit`. */
  POLL_PAGE_SIZE: z.coerce.number().int().min(1).max(1000).default(100),
  /** Requests per second to one connection's source, on average (bursts of one second's worth). */
  POLL_CONNECTION_RPS: z.coerce.number().positive().max(1000).default(5),
  POLL_REQUEST_TIMEOUT_MS: z.coerce.number().int().min(100).max(300_000).default(30_000),
  /** A connection whose poller vanished is polled by another worker after this long. */
  POLL_LEASE_MS: z.coerce.number().int().min(1000).max(3_600_000).default(120_000),
  /** Consecutive failed runs (read/process/dispatch) that mark a virtual webhook unhealthy. */
  POLL_FAILURE_THRESHOLD: z.coerce.number().int().min(1).default(3),
  /** A connection whose credentials were refused (401/403) is tried again after this long, or at once when updated. */
  POLL_AUTH_RETRY_MS: z.coerce.number().int().min(100).default(15 * 60_000),
  /** Finished runs older than this are deleted by the worker. */
  POLL_RUN_RETENTION_HOURS: z.coerce.number().positive().default(24),

  /** Attempts older than this are deleted by the worker, in batches. */
  ATTEMPT_RETENTION_DAYS: z.coerce.number().positive().default(30),
  /** Finished (succeeded or dead) deliveries made longer ago than this are deleted with their attempts, then events no delivery refers to; pending and held ones stay. */
  DELIVERY_RETENTION_DAYS: z.coerce.number().positive().default(30),
  /** A stored Idempotency-Key (and the response it replays) is kept this long. */
  IDEMPOTENCY_KEY_RETENTION_HOURS: z.coerce.number().positive().default(24),
  RETENTION_INTERVAL_MS: z.coerce.number().int().min(100).default(10 * 60_000),
  /** After a rotation, the old secret keeps signing (alongside the new) for this long. */
  SECRET_ROTATION_OVERLAP_SECONDS: z.coerce.number().min(0).max(30 * 86400).default(24 * 3600),

  /** How long a verified API key is trusted without asking the database again. */
  API_KEY_CACHE_MS: z.coerce.number().int().min(0).max(60_000).default(2000),
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
  /** DATABASE_QUERY_TIMEOUT_MS: a statement unanswered this long closes its connection. */
  databaseQueryTimeoutMs: number;
  api: { host: string; port: number; bodyLimitBytes: number; docsEnabled: boolean; keyCacheMs: number };
  receiver: { host: string; port: number; secrets: string[] };
  /** The demo source `pnpm start` runs (apps/mock-provider; it reads its own MOCK_PROVIDER_* settings). */
  mockProvider: { host: string; port: number };
  bootstrapApiKey: string | undefined;
  adminToken: string | undefined;
  encryptionKey: Buffer;
  /** True when the encryption key is the built-in development key. */
  usingDevEncryptionKey: boolean;
  dataDir: string;
  minIntervalMinutes: number;
  supervisorPid: number | undefined;
  ssrfAllowlist: string[];
  ingest: { groupCommitMs: number; groupCommitMax: number; commitsInFlight: number; batchBodyLimitBytes: number };
  delivery: {
    concurrency: number;
    perEndpointConcurrency: number;
    claimExcludeMax: number;
    batchSize: number;
    timeoutMs: number;
    connectTimeoutMs: number;
    leaseMs: number;
    listenHeartbeatMs: number;
  };
  retry: { schedule: string; jitter: number; timeScale: number; maxRetryAfterSeconds: number };
  health: { failureThreshold: number; pauseAfterSeconds: number };
  retention: { attemptDays: number; deliveryDays: number; idempotencyKeyHours: number; intervalMs: number; pollRunHours: number };
  polling: {
    concurrency: number;
    defaultIntervalMinutes: number;
    jitter: number;
    overlapMs: number;
    pageSize: number;
    connectionRps: number;
    requestTimeoutMs: number;
    leaseMs: number;
    failureThreshold: number;
    authRetryMs: number;
  };
  secretRotationOverlapSeconds: number;
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
  // A send is bounded by DELIVERY_TIMEOUT_MS; a lease that could run out first would let
  // another worker (or this one) claim and send the delivery again while it is in flight.
  if (e.DELIVERY_LEASE_MS !== undefined && e.DELIVERY_LEASE_MS < 2 * e.DELIVERY_TIMEOUT_MS) {
    throw new ConfigError([
      { variable: 'DELIVERY_LEASE_MS', message: `must be at least twice DELIVERY_TIMEOUT_MS (${2 * e.DELIVERY_TIMEOUT_MS} ms), or a send could outlive its lease` },
    ]);
  }
  const key = e.HOOKPOST_ENCRYPTION_KEY ?? DEV_ENCRYPTION_KEY;
  return Object.freeze({
    env: e.NODE_ENV,
    logLevel: e.LOG_LEVEL,
    databaseUrl: e.DATABASE_URL,
    databasePoolMax: e.DATABASE_POOL_MAX,
    databaseQueryTimeoutMs: e.DATABASE_QUERY_TIMEOUT_MS,
    api: {
      host: e.API_HOST,
      port: e.API_PORT,
      bodyLimitBytes: e.BODY_LIMIT_BYTES,
      docsEnabled: e.DOCS_ENABLED,
      keyCacheMs: e.API_KEY_CACHE_MS,
    },
    receiver: {
      host: e.RECEIVER_HOST,
      port: e.RECEIVER_PORT,
      secrets: (e.RECEIVER_SECRETS ?? '').split(',').map((s) => s.trim()).filter(Boolean),
    },
    mockProvider: { host: '127.0.0.1', port: e.MOCK_PROVIDER_PORT },
    bootstrapApiKey: e.HOOKPOST_API_KEY,
    adminToken: e.HOOKPOST_ADMIN_TOKEN,
    encryptionKey: Buffer.from(key, 'base64'),
    usingDevEncryptionKey: !e.HOOKPOST_ENCRYPTION_KEY,
    dataDir: e.HOOKPOST_DATA_DIR,
    minIntervalMinutes: e.MIN_INTERVAL_MINUTES,
    supervisorPid: e.HOOKPOST_SUPERVISOR_PID,
    ssrfAllowlist: (e.HOOKPOST_SSRF_ALLOWLIST ?? '').split(',').map((s) => s.trim()).filter(Boolean),
    ingest: {
      groupCommitMs: e.INGEST_GROUP_COMMIT_MS,
      groupCommitMax: e.INGEST_GROUP_COMMIT_MAX,
      commitsInFlight: e.INGEST_COMMITS_IN_FLIGHT,
      batchBodyLimitBytes: e.EVENTS_BATCH_BODY_LIMIT_BYTES,
    },
    delivery: {
      concurrency: e.DELIVERY_CONCURRENCY,
      perEndpointConcurrency: e.DELIVERY_PER_ENDPOINT_CONCURRENCY,
      claimExcludeMax: e.DELIVERY_CLAIM_EXCLUDE_MAX,
      batchSize: e.DELIVERY_BATCH_SIZE,
      timeoutMs: e.DELIVERY_TIMEOUT_MS,
      connectTimeoutMs: e.DELIVERY_CONNECT_TIMEOUT_MS,
      leaseMs: e.DELIVERY_LEASE_MS ?? 3 * e.DELIVERY_TIMEOUT_MS + 30_000,
      listenHeartbeatMs: e.DELIVERY_LISTEN_HEARTBEAT_MS,
    },
    retry: {
      schedule: e.RETRY_SCHEDULE,
      jitter: e.RETRY_JITTER,
      timeScale: e.RETRY_TIME_SCALE,
      maxRetryAfterSeconds: e.RETRY_AFTER_MAX_SECONDS,
    },
    health: { failureThreshold: e.HEALTH_FAILURE_THRESHOLD, pauseAfterSeconds: e.HEALTH_PAUSE_AFTER_SECONDS },
    retention: {
      attemptDays: e.ATTEMPT_RETENTION_DAYS,
      deliveryDays: e.DELIVERY_RETENTION_DAYS,
      idempotencyKeyHours: e.IDEMPOTENCY_KEY_RETENTION_HOURS,
      intervalMs: e.RETENTION_INTERVAL_MS,
      pollRunHours: e.POLL_RUN_RETENTION_HOURS,
    },
    polling: {
      concurrency: e.POLL_CONCURRENCY,
      defaultIntervalMinutes: e.POLL_DEFAULT_INTERVAL_MINUTES,
      jitter: e.POLL_JITTER,
      overlapMs: e.POLL_OVERLAP_MS,
      pageSize: e.POLL_PAGE_SIZE,
      connectionRps: e.POLL_CONNECTION_RPS,
      requestTimeoutMs: e.POLL_REQUEST_TIMEOUT_MS,
      leaseMs: e.POLL_LEASE_MS,
      failureThreshold: e.POLL_FAILURE_THRESHOLD,
      authRetryMs: e.POLL_AUTH_RETRY_MS,
    },
    secretRotationOverlapSeconds: e.SECRET_ROTATION_OVERLAP_SECONDS,
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
