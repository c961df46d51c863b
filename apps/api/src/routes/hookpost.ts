import { contract, type ApiKey, type Environment } from '@hookpost/contract';
import { apiKeys, workspaces, type ApiKeyRow, type EnvironmentRow } from '@hookpost/db';
import { initServer } from '@ts-rest/express';
import { requireAdminToken } from '../http/auth.js';
import { requireScope } from '../http/context.js';
import { ApiError } from '../http/errors.js';
import type { ApiDeps } from '../services/deps.js';

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

export function hookpostRouter(deps: ApiDeps) {
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
      return { status: 200, body: (await apiKeys.listApiKeys(db, scope.workspaceId)).map(toApiKey) };
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
      if (!(await apiKeys.deleteApiKey(db, scope.workspaceId, params.id))) throw ApiError.notFound('API key');
      return { status: 204, body: undefined };
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
