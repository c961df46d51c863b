import { initContract } from '@ts-rest/core';
import { z } from 'zod';
import { IdParams } from '../common.js';
import {
  Attempt,
  Delivery,
  DeliveryList,
  DeliveryListQuery,
  EventAccepted,
  EventBatchAccepted,
  EventBatchIn,
  EventIn,
  IngestHeaders,
  ReplayResult,
  ReplayWebhookRequest,
  RotateSecretRequest,
  WebhookSecret,
} from '../models/events.js';
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
      summary: 'Delete an API key; it stops working at once in the API process that deleted it, in others within API_KEY_CACHE_MS (2 s)',
    },
    ingestEvent: {
      method: 'POST',
      path: '/events',
      headers: IngestHeaders,
      body: EventIn,
      responses: { 202: EventAccepted },
      summary: 'Publish one event; 202 once it and every delivery it fans out to are committed',
    },
    ingestEvents: {
      method: 'POST',
      path: '/events/batch',
      headers: IngestHeaders,
      body: EventBatchIn,
      responses: { 202: EventBatchAccepted },
      summary: 'Publish up to 1000 events in one transaction',
    },
    getWebhookSecret: {
      method: 'GET',
      path: '/webhooks/:id/secret',
      pathParams: IdParams,
      responses: { 200: WebhookSecret },
      summary: "A webhook's current signing secret (either face)",
    },
    rotateWebhookSecret: {
      method: 'POST',
      path: '/webhooks/:id/rotate-secret',
      pathParams: IdParams,
      body: RotateSecretRequest,
      responses: { 200: WebhookSecret },
      summary: 'Issue a new signing secret; the old one keeps signing during the overlap',
    },
    listWebhookDeliveries: {
      method: 'GET',
      path: '/webhooks/:id/deliveries',
      pathParams: IdParams,
      query: DeliveryListQuery,
      responses: { 200: DeliveryList },
      summary: "A webhook's deliveries, newest first (filter by status and time)",
    },
    replayWebhook: {
      method: 'POST',
      path: '/webhooks/:id/replay',
      pathParams: IdParams,
      body: ReplayWebhookRequest,
      responses: { 202: ReplayResult },
      summary: "Replay a webhook's failed and dead deliveries since a time",
    },
    getDelivery: {
      method: 'GET',
      path: '/deliveries/:id',
      pathParams: IdParams,
      responses: { 200: Delivery },
      summary: 'One delivery',
    },
    listAttempts: {
      method: 'GET',
      path: '/deliveries/:id/attempts',
      pathParams: IdParams,
      responses: { 200: z.array(Attempt) },
      summary: "A delivery's attempts: status, duration, error class, response snippet, request headers",
    },
    replayDelivery: {
      method: 'POST',
      path: '/deliveries/:id/replay',
      pathParams: IdParams,
      body: c.noBody(),
      responses: { 202: ReplayResult },
      summary: 'Send a delivery again (a new delivery with a new webhook-id)',
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
