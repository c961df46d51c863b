import { contract } from '@hookpost/contract';
import { initServer } from '@ts-rest/express';
import { sql } from 'kysely';
import type { ApiContext } from '../services/deps.js';

const s = initServer();

export function systemRouter(deps: ApiContext) {
  return s.router(contract.system, {
    healthz: async () => ({ status: 200, body: { status: 'ok' } }),
    readyz: async () => {
      try {
        await sql`select 1`.execute(deps.db);
        return { status: 200, body: { status: 'ok', checks: { database: 'ok' } } };
      } catch (err) {
        deps.logger.warn({ err }, 'readiness check failed');
        return { status: 503, body: { status: 'unavailable', checks: { database: 'unreachable' } } };
      }
    },
  });
}
