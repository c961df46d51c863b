import { initContract } from '@ts-rest/core';
import { ErrorEnvelope } from './errors.js';
import { hookpostRoutes, systemRoutes } from './routes/hookpost.js';
import { trutoWebhookRoutes } from './routes/truto.js';
import { unifiedConnectionRoutes, unifiedWebhookRoutes } from './routes/unified.js';

const c = initContract();

/** The whole HTTP API. Every 4xx/5xx body is the one {@link ErrorEnvelope}. */
export const contract = c.router(
  {
    unified: { webhook: unifiedWebhookRoutes, connection: unifiedConnectionRoutes },
    truto: { webhook: trutoWebhookRoutes },
    hookpost: hookpostRoutes,
    system: systemRoutes,
  },
  {
    commonResponses: {
      400: ErrorEnvelope,
      401: ErrorEnvelope,
      404: ErrorEnvelope,
      409: ErrorEnvelope,
      413: ErrorEnvelope,
      415: ErrorEnvelope,
      500: ErrorEnvelope,
      503: ErrorEnvelope,
    },
  },
);

export type Contract = typeof contract;
