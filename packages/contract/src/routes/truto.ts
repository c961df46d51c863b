import { initContract } from '@ts-rest/core';
import { z } from 'zod';
import { IdParams } from '../common.js';
import {
  TrutoWebhook,
  TrutoWebhookCreate,
  TrutoWebhookList,
  TrutoWebhookListQuery,
  TrutoWebhookTestRequest,
  TrutoWebhookTestResult,
  TrutoWebhookUpdate,
  TrutoWebhookWithSecret,
} from '../models/truto-webhook.js';

const c = initContract();

/** Truto's webhook admin API. */
export const trutoWebhookRoutes = c.router({
  list: {
    method: 'GET',
    path: '/webhook',
    query: TrutoWebhookListQuery,
    responses: { 200: TrutoWebhookList },
    summary: 'List webhooks (cursor-paged)',
  },
  create: {
    method: 'POST',
    path: '/webhook',
    body: TrutoWebhookCreate,
    responses: { 201: TrutoWebhookWithSecret },
    summary: 'Create a webhook; the response is the only one that carries `secret`',
  },
  test: {
    method: 'POST',
    path: '/webhook/test',
    body: TrutoWebhookTestRequest,
    responses: { 200: TrutoWebhookTestResult },
    summary: 'Send a test event to a webhook',
  },
  get: {
    method: 'GET',
    path: '/webhook/:id',
    pathParams: IdParams,
    responses: { 200: TrutoWebhook },
    summary: 'Retrieve a webhook',
  },
  update: {
    method: 'PATCH',
    path: '/webhook/:id',
    pathParams: IdParams,
    body: TrutoWebhookUpdate,
    responses: { 200: TrutoWebhook },
    summary: 'Update a webhook',
  },
  remove: {
    method: 'DELETE',
    path: '/webhook/:id',
    pathParams: IdParams,
    body: c.noBody(),
    responses: { 200: z.object({ id: z.string() }) },
    summary: 'Delete a webhook',
  },
});
