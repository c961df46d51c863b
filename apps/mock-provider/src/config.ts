import { z } from 'zod';

/** Unset and empty variables both mean "use the default". */
const env = <T extends z.ZodTypeAny>(schema: T) => z.preprocess((v) => (v === '' ? undefined : v), schema);
const rate = env(z.coerce.number().min(0).max(1_000_000).default(0));

const ProviderEnv = z.object({
  MOCK_PROVIDER_HOST: env(z.string().min(1).default('127.0.0.1')),
  MOCK_PROVIDER_PORT: env(z.coerce.number().int().min(0).max(65_535).default(4700)),
  MOCK_PROVIDER_SEED: env(z.string().min(1).default('hookpost')),
  MOCK_PROVIDER_RECORDS: env(z.coerce.number().int().min(0).max(1_000_000).default(25)),
  MOCK_PROVIDER_CREATES_PER_MIN: rate,
  MOCK_PROVIDER_UPDATES_PER_MIN: rate,
  MOCK_PROVIDER_DELETES_PER_MIN: rate,
  LOG_LEVEL: env(z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info')),
  HOOKPOST_SUPERVISOR_PID: env(z.coerce.number().int().positive().optional()),
});

export interface ProviderConfig {
  host: string;
  port: number;
  seed: string;
  records: number;
  rates: { creates_per_min: number; updates_per_min: number; deletes_per_min: number };
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  supervisorPid: number | undefined;
}

/** The mock provider's settings from the environment; throws listing every invalid variable. */
export function loadProviderConfig(source: NodeJS.ProcessEnv = process.env): ProviderConfig {
  const parsed = ProviderEnv.safeParse(source);
  if (!parsed.success) {
    throw new Error(`invalid mock provider environment: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  const e = parsed.data;
  return {
    host: e.MOCK_PROVIDER_HOST,
    port: e.MOCK_PROVIDER_PORT,
    seed: e.MOCK_PROVIDER_SEED,
    records: e.MOCK_PROVIDER_RECORDS,
    rates: { creates_per_min: e.MOCK_PROVIDER_CREATES_PER_MIN, updates_per_min: e.MOCK_PROVIDER_UPDATES_PER_MIN, deletes_per_min: e.MOCK_PROVIDER_DELETES_PER_MIN },
    logLevel: e.LOG_LEVEL,
    supervisorPid: e.HOOKPOST_SUPERVISOR_PID,
  };
}
