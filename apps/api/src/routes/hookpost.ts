import { contract, type ApiKey, type Environment, type EventAccepted } from '@hookpost/contract';
import { apiKeys, workspaces, type ApiKeyRow, type EnvironmentRow } from '@hookpost/db';
import { initServer } from '@ts-rest/express';
import { requireAdminToken } from '../http/auth.js';
import { requireScope } from '../http/context.js';
import { ApiError, withRequestId } from '../http/errors.js';
import { withExactData } from '../http/exact-numbers.js';
import { rawBodyText, rawBodyBytes } from '../http/unstorable-bodies.js';
import type { ApiContext } from '../services/deps.js';
import { toAttempt, toDelivery } from '../services/delivery-views.js';
import { requireWebhook, rotateSecret, secretsOf } from '../services/webhook-delivery.js';
import { decodeCursor, encodeCursor } from '../http/cursor.js';
import { deliveries } from '@hookpost/db';

const s = initServer();

const toEnvironment = (e: EnvironmentRow): Environment => ({
  id: e.id,
  workspace_id: e.workspace_id,
  name: e.name,
  created_at: e.created_at.toISOString(),
});

const toApiKey = (k: ApiKeyRow): ApiKey => ({
  id: k.id,
  workspace_id: k.workspace_id,
  ...(k.environment_id ? { environment_id: k.environment_id } : {}),
  name: k.name,
  prefix: k.prefix,
  created_at: k.created_at.toISOString(),
  ...(k.last_used_at ? { last_used_at: k.last_used_at.toISOString() } : {}),
});

export function hookpostRouter(deps: ApiContext) {
  const { db } = deps;
  return s.router(contract.hookpost, {
    workspace: async ({ req }) => {
      const scope = requireScope(req);
      const ws = await workspaces.getWorkspace(db, scope.workspaceId);
      if (!ws) throw ApiError.notFound('workspace');
      const envs = await workspaces.listEnvironments(db, ws.id);
      return {
        status: 200,
        body: {
          id: ws.id,
          name: ws.name,
          created_at: ws.created_at.toISOString(),
          environments: envs.filter((e) => scope.environmentId === null || e.id === scope.environmentId).map(toEnvironment),
        },
      };
    },
    listEnvironments: async ({ req }) => {
      const scope = requireScope(req);
      const envs = await workspaces.listEnvironments(db, scope.workspaceId);
      return { status: 200, body: envs.filter((e) => scope.environmentId === null || e.id === scope.environmentId).map(toEnvironment) };
    },
    createEnvironment: async ({ body, req }) => {
      const scope = requireScope(req);
      if (scope.environmentId !== null) throw new ApiError('forbidden', 'an environment-scoped key cannot create environments');
      const env = await workspaces.createEnvironment(db, scope.workspaceId, body.name);
      if (!env) throw new ApiError('conflict', `an environment named ${body.name} exists`, 'body.name');
      return { status: 201, body: toEnvironment(env) };
    },
    listApiKeys: async ({ req }) => {
      const scope = requireScope(req);
      return { status: 200, body: (await apiKeys.listApiKeys(db, scope)).map(toApiKey) };
    },
    createApiKey: async ({ body, req }) => {
      const scope = requireScope(req);
      let environmentId = scope.environmentId;
      if (body.environment_id !== undefined) {
        const env = await workspaces.findEnvironment(db, scope.workspaceId, { id: body.environment_id });
        if (!env || (scope.environmentId !== null && env.id !== scope.environmentId)) {
          throw ApiError.invalidField('environment_id', 'no environment with this id in this workspace');
        }
        environmentId = env.id;
      }
      const { row, key } = await apiKeys.createApiKey(db, {
        workspaceId: scope.workspaceId,
        environmentId,
        name: body.name ?? 'API key',
      });
      return { status: 201, body: { ...toApiKey(row), key } };
    },
    deleteApiKey: async ({ params, req }) => {
      const scope = requireScope(req);
      if (!(await apiKeys.deleteApiKey(db, scope, params.id))) throw ApiError.notFound('API key');
      deps.apiKeyCache.forget(params.id);
      return { status: 204, body: undefined };
    },
    ingestEvent: async ({ body, headers, req }) => {
      const answer = await deps.ingestor.submit({ scope: requireScope(req), events: withExactData(rawBodyText(req), [body], true), single: true, idempotencyKey: headers['idempotency-key'], bodyBytes: rawBodyBytes(req) });
      return { status: answer.status, body: withRequestId(answer.body, req.id) } as { status: 202; body: EventAccepted };
    },
    ingestEvents: async ({ body, headers, req }) => {
      const answer = await deps.ingestor.submit({ scope: requireScope(req), events: withExactData(rawBodyText(req), body.events, false), single: false, idempotencyKey: headers['idempotency-key'], bodyBytes: rawBodyBytes(req) });
      return { status: answer.status, body: withRequestId(answer.body, req.id) } as { status: 202; body: { events: EventAccepted[] } };
    },
    getWebhookSecret: async ({ params, req }) => ({
      status: 200,
      body: secretsOf(deps, await requireWebhook(db, requireScope(req), params.id)),
    }),
    rotateWebhookSecret: async ({ params, body, req }) => {
      const row = await rotateSecret(deps, requireScope(req), params.id, body.overlap_seconds ?? deps.config.secretRotationOverlapSeconds);
      return { status: 200, body: secretsOf(deps, row) };
    },
    listWebhookDeliveries: async ({ params, query, req }) => {
      const scope = requireScope(req);
      await requireWebhook(db, scope, params.id);
      const limit = query.limit ?? 100;
      const rows = await deliveries.listWebhookDeliveries(db, scope.workspaceId, params.id, {
        statuses: query.status,
        since: query.since,
        until: query.until,
        limit: limit + 1,
        before: query.next_cursor ? decodeCursor(query.next_cursor) : undefined,
      });
      const page = rows.slice(0, limit);
      const last = page[page.length - 1];
      return {
        status: 200,
        body: { result: page.map(toDelivery), next_cursor: rows.length > limit && last ? encodeCursor(last.created_at, last.id) : null },
      };
    },
    replayWebhook: async ({ params, body, req }) => {
      const scope = requireScope(req);
      await requireWebhook(db, scope, params.id);
      const created = await deliveries.replayFailedDeliveries(db, scope.workspaceId, params.id, body.since, body.limit ?? 10_000);
      return { status: 202, body: { count: created.length, deliveries: created } };
    },
    getDelivery: async ({ params, req }) => {
      const row = await deliveries.getDelivery(db, requireScope(req), params.id);
      if (!row) throw ApiError.notFound('delivery');
      return { status: 200, body: toDelivery(row) };
    },
    listAttempts: async ({ params, req }) => {
      const row = await deliveries.getDelivery(db, requireScope(req), params.id);
      if (!row) throw ApiError.notFound('delivery');
      return { status: 200, body: (await deliveries.listAttempts(db, row.id)).map(toAttempt) };
    },
    replayDelivery: async ({ params, req }) => {
      const scope = requireScope(req);
      const row = await deliveries.getDelivery(db, scope, params.id);
      if (!row) throw ApiError.notFound('delivery');
      const created = await deliveries.replayDeliveries(db, scope.workspaceId, [row.id]);
      return { status: 202, body: { count: created.length, deliveries: created } };
    },
    createWorkspace: {
      middleware: [requireAdminToken(deps.config.adminToken)],
      handler: async ({ body }) => {
        const { workspace, environment } = await workspaces.createWorkspace(db, body.name);
        const { row, key } = await apiKeys.createApiKey(db, { workspaceId: workspace.id, name: 'Initial key' });
        return {
          status: 201,
          body: {
            workspace: {
              id: workspace.id,
              name: workspace.name,
              created_at: workspace.created_at.toISOString(),
              environments: [toEnvironment(environment)],
            },
            api_key: { ...toApiKey(row), key },
          },
        };
      },
    },
  });
}
