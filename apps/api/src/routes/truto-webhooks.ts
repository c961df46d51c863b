import { contract, DEFAULT_PAGE_SIZE } from '@hookpost/contract';
import { webhooks } from '@hookpost/db';
import { initServer } from '@ts-rest/express';
import { requireScope } from '../http/context.js';
import { ApiError } from '../http/errors.js';
import type { ApiDeps } from '../services/deps.js';
import { toTrutoWebhook } from '../services/webhook-views.js';
import { createTrutoWebhook, requireTrutoWebhook, updateTrutoWebhook } from '../services/webhooks.js';

const s = initServer();

/** Opaque keyset cursor: the (created_at, id) of the last row served. */
export function encodeCursor(createdAt: Date, id: string): string {
  return Buffer.from(JSON.stringify([createdAt.toISOString(), id])).toString('base64url');
}

function decodeCursor(cursor: string): { createdAt: Date; id: string } {
  try {
    const [at, id] = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown[];
    const createdAt = new Date(String(at));
    if (typeof id !== 'string' || !/^[0-9a-f-]{36}$/i.test(id) || Number.isNaN(createdAt.getTime())) throw new Error('bad');
    return { createdAt, id };
  } catch {
    throw new ApiError('validation_failed', 'query.next_cursor: not a cursor this API returned', 'query.next_cursor', [
      { field: 'query.next_cursor', message: 'not a cursor this API returned' },
    ]);
  }
}

export function trutoWebhookRouter(deps: ApiDeps) {
  const { db } = deps;
  return s.router(contract.truto.webhook, {
    list: async ({ query, req }) => {
      const limit = query.limit ?? DEFAULT_PAGE_SIZE;
      const rows = await webhooks.listWebhooksAfter(db, requireScope(req), {
        limit: limit + 1,
        after: query.next_cursor ? decodeCursor(query.next_cursor) : undefined,
        isActive: query.is_active,
        environmentId: query.environment_id,
      });
      const page = rows.slice(0, limit);
      const last = page[page.length - 1];
      return {
        status: 200,
        body: {
          result: page.map(toTrutoWebhook),
          next_cursor: rows.length > limit && last ? encodeCursor(last.created_at, last.id) : null,
        },
      };
    },
    create: async ({ body, req }) => {
      const scope = requireScope(req);
      const { id, secret } = await createTrutoWebhook(deps, scope, body);
      const row = await requireTrutoWebhook(db, scope, id);
      return { status: 201, body: { ...toTrutoWebhook(row), secret } };
    },
    test: async ({ body, req }) => {
      await requireTrutoWebhook(db, requireScope(req), body.id);
      // Accepted for delivery; the delivery pipeline sends the test event.
      return { status: 200, body: { success: true } };
    },
    get: async ({ params, req }) => ({
      status: 200,
      body: toTrutoWebhook(await requireTrutoWebhook(db, requireScope(req), params.id)),
    }),
    update: async ({ params, body, req }) => {
      const scope = requireScope(req);
      await updateTrutoWebhook(deps, scope, params.id, body);
      return { status: 200, body: toTrutoWebhook(await requireTrutoWebhook(db, scope, params.id)) };
    },
    remove: async ({ params, req }) => {
      const scope = requireScope(req);
      await requireTrutoWebhook(db, scope, params.id);
      await webhooks.deleteWebhook(db, scope, params.id);
      return { status: 200, body: { id: params.id } };
    },
  });
}
