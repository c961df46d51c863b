import { initContract } from '@ts-rest/core';
import { z } from 'zod';
import { IdParams } from '../common.js';
import {
  ApiKey,
  ApiKeyCreate,
  ApiKeyWithSecret,
  Environment,
  EnvironmentCreate,
  Workspace,
  WorkspaceCreate,
  WorkspaceCreated,
} from '../models/workspace.js';

const c = initContract();

/** Hookpost's own endpoints, for what neither seed API has. */
export const hookpostRoutes = c.router(
  {
    workspace: {
      method: 'GET',
      path: '/workspace',
      responses: { 200: Workspace },
      summary: 'The workspace of the calling API key',
    },
    listEnvironments: {
      method: 'GET',
      path: '/environments',
      responses: { 200: z.array(Environment) },
      summary: 'List environments',
    },
    createEnvironment: {
      method: 'POST',
      path: '/environments',
      body: EnvironmentCreate,
      responses: { 201: Environment },
      summary: 'Create an environment',
    },
    listApiKeys: {
      method: 'GET',
      path: '/api-keys',
      responses: { 200: z.array(ApiKey) },
      summary: 'List API keys (never the keys themselves)',
    },
    createApiKey: {
      method: 'POST',
      path: '/api-keys',
      body: ApiKeyCreate,
      responses: { 201: ApiKeyWithSecret },
      summary: 'Create an API key; the key is shown only in this response',
    },
    deleteApiKey: {
      method: 'DELETE',
      path: '/api-keys/:id',
      pathParams: IdParams,
      body: c.noBody(),
      responses: { 204: c.noBody() },
      summary: 'Delete an API key; it stops working at once',
    },
    createWorkspace: {
      method: 'POST',
      path: '/admin/workspaces',
      body: WorkspaceCreate,
      responses: { 201: WorkspaceCreated },
      summary: 'Create a workspace (admin token)',
      description: 'Authorised by HOOKPOST_ADMIN_TOKEN, not by an API key.',
    },
  },
  { pathPrefix: '/v1' },
);

export const HealthStatus = z.object({ status: z.enum(['ok', 'unavailable']), checks: z.record(z.string()).optional() });

export const systemRoutes = c.router({
  healthz: {
    method: 'GET',
    path: '/healthz',
    responses: { 200: HealthStatus },
    summary: 'Liveness: the process is serving',
  },
  readyz: {
    method: 'GET',
    path: '/readyz',
    responses: { 200: HealthStatus, 503: HealthStatus },
    summary: 'Readiness: the database answers',
  },
});
