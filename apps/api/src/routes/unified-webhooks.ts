import { contract, DEFAULT_PAGE_SIZE } from '@hookpost/contract';
import { pollStreams, webhooks, type Scope } from '@hookpost/db';
import { initServer } from '@ts-rest/express';
import { requireScope } from '../http/context.js';
import type { ApiContext } from '../services/deps.js';
import { toUnifiedWebhook } from '@hookpost/delivery';
import {
  createUnifiedWebhook,
  patchUnifiedWebhook,
  replaceUnifiedWebhook,
  requireUnifiedWebhook,
  resumeUnifiedWebhook,
} from '../services/webhooks.js';
import { queueTestDelivery } from '../services/webhook-delivery.js';

const s = initServer();

export function unifiedWebhookRouter(deps: ApiContext) {
  const { db } = deps;
  const auth = requireScope;

  /** The unified.to representation, with its recent runs. */
  const show = async (scope: Scope, id: string) => {
    const row = await requireUnifiedWebhook(db, scope, id);
    const runs = await pollStreams.recentRuns(db, [row.id]);
    return toUnifiedWebhook(row, runs.get(row.id));
  };

  /** A virtual webhook's stream runs now; a webhook that polls nothing gets a test delivery. */
  const trigger = async (scope: Scope, id: string) => {
    const row = await requireUnifiedWebhook(db, scope, id);
    if (!(await pollStreams.requestRun(db, row.stream_id))) await queueTestDelivery(deps, row);
    return { status: 200 as const, body: undefined };
  };

  return s.router(contract.unified.webhook, {
    list: async ({ query, req }) => {
      const rows = await webhooks.listUnifiedWebhooks(db, auth(req), {
        limit: query.limit ?? DEFAULT_PAGE_SIZE,
        offset: query.offset ?? 0,
        sort: query.sort ?? 'created_at',
        order: query.order ?? 'asc',
        updatedGte: query.updated_gte,
        createdLte: query.created_lte,
        objectType: query.object,
        integrationType: query.integration_type,
        connectionId: query.connection_id,
        environmentName: query.env,
        isHealthy: query.is_healthy,
      });
      const runs = await pollStreams.recentRuns(db, rows.map((r) => r.id));
      return { status: 200, body: rows.map((r) => toUnifiedWebhook(r, runs.get(r.id))) };
    },
    create: async ({ body, query, req }) => {
      const scope = auth(req);
      const id = await createUnifiedWebhook(deps, scope, body, query.include_all ?? false);
      return { status: 200, body: await show(scope, id) };
    },
    get: async ({ params, req }) => ({ status: 200, body: await show(auth(req), params.id) }),
    update: async ({ params, body, req }) => {
      const scope = auth(req);
      await replaceUnifiedWebhook(deps, scope, params.id, body);
      return { status: 200, body: await show(scope, params.id) };
    },
    patch: async ({ params, body, req }) => {
      const scope = auth(req);
      await patchUnifiedWebhook(deps, scope, params.id, body);
      return { status: 200, body: await show(scope, params.id) };
    },
    remove: async ({ params, req }) => {
      const scope = auth(req);
      await requireUnifiedWebhook(db, scope, params.id);
      await webhooks.deleteWebhook(db, scope, params.id);
      return { status: 200, body: undefined };
    },
    triggerPut: async ({ params, req }) => trigger(auth(req), params.id),
    triggerPatch: async ({ params, req }) => trigger(auth(req), params.id),
    resume: async ({ params, req }) => {
      const scope = auth(req);
      await resumeUnifiedWebhook(deps, scope, params.id);
      return { status: 200, body: await show(scope, params.id) };
    },
  });
}
