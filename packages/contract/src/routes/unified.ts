import { initContract } from '@ts-rest/core';
import { z } from 'zod';
import { IdParams } from '../common.js';
import { Connection, ConnectionListQuery, ConnectionPatch, ConnectionWrite } from '../models/connection.js';
import {
  UnifiedWebhook,
  UnifiedWebhookCreateQuery,
  UnifiedWebhookListQuery,
  UnifiedWebhookPatch,
  UnifiedWebhookWrite,
} from '../models/unified-webhook.js';

const c = initContract();

/** unified.to's webhook API, path for path, so its SDKs work unchanged. */
export const unifiedWebhookRoutes = c.router({
  list: {
    method: 'GET',
    path: '/unified/webhook',
    query: UnifiedWebhookListQuery,
    responses: { 200: z.array(UnifiedWebhook) },
    summary: 'List webhook subscriptions',
  },
  create: {
    method: 'POST',
    path: '/unified/webhook',
    query: UnifiedWebhookCreateQuery,
    body: UnifiedWebhookWrite,
    responses: { 200: UnifiedWebhook },
    summary: 'Create a webhook subscription',
    description: 'With `include_all=true`, the existing records are sent first (INITIAL-PARTIAL pages, then INITIAL-COMPLETE).',
  },
  get: {
    method: 'GET',
    path: '/unified/webhook/:id',
    pathParams: IdParams,
    responses: { 200: UnifiedWebhook },
    summary: 'Retrieve a webhook subscription',
  },
  update: {
    method: 'PUT',
    path: '/unified/webhook/:id',
    pathParams: IdParams,
    body: UnifiedWebhookWrite,
    responses: { 200: UnifiedWebhook },
    summary: 'Replace a webhook subscription',
  },
  patch: {
    method: 'PATCH',
    path: '/unified/webhook/:id',
    pathParams: IdParams,
    body: UnifiedWebhookPatch,
    responses: { 200: UnifiedWebhook },
    summary: 'Update some fields of a webhook subscription',
  },
  remove: {
    method: 'DELETE',
    path: '/unified/webhook/:id',
    pathParams: IdParams,
    body: c.noBody(),
    responses: { 200: c.noBody() },
    summary: 'Remove a webhook subscription',
  },
  triggerPut: {
    method: 'PUT',
    path: '/unified/webhook/:id/trigger',
    pathParams: IdParams,
    body: c.noBody(),
    responses: { 200: c.noBody() },
    summary: 'Trigger a virtual webhook run now',
  },
  triggerPatch: {
    method: 'PATCH',
    path: '/unified/webhook/:id/trigger',
    pathParams: IdParams,
    body: c.noBody(),
    responses: { 200: c.noBody() },
    summary: 'Trigger a virtual webhook run now',
  },
  resume: {
    method: 'PUT',
    path: '/unified/webhook/:id/resume',
    pathParams: IdParams,
    body: c.noBody(),
    responses: { 200: UnifiedWebhook },
    summary: 'Resume an unhealthy or paused webhook',
  },
});

/** unified.to's connection API: the tenancy level webhooks hang off. */
export const unifiedConnectionRoutes = c.router({
  list: {
    method: 'GET',
    path: '/unified/connection',
    query: ConnectionListQuery,
    responses: { 200: z.array(Connection) },
    summary: 'List connections',
  },
  create: {
    method: 'POST',
    path: '/unified/connection',
    body: ConnectionWrite,
    responses: { 200: Connection },
    summary: 'Create a connection',
  },
  get: {
    method: 'GET',
    path: '/unified/connection/:id',
    pathParams: IdParams,
    responses: { 200: Connection },
    summary: 'Retrieve a connection',
  },
  update: {
    method: 'PUT',
    path: '/unified/connection/:id',
    pathParams: IdParams,
    body: ConnectionWrite,
    responses: { 200: Connection },
    summary: 'Replace a connection',
  },
  patch: {
    method: 'PATCH',
    path: '/unified/connection/:id',
    pathParams: IdParams,
    body: ConnectionPatch,
    responses: { 200: Connection },
    summary: 'Update some fields of a connection',
  },
  remove: {
    method: 'DELETE',
    path: '/unified/connection/:id',
    pathParams: IdParams,
    body: c.noBody(),
    responses: { 200: c.noBody() },
    summary: 'Remove a connection and its webhooks',
  },
});
