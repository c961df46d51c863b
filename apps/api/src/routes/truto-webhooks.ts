import { contract, DEFAULT_PAGE_SIZE } from '@hookpost/contract';
import { webhooks } from '@hookpost/db';
import { initServer } from '@ts-rest/express';
import { requireScope } from '../http/context.js';
import { decodeCursor, encodeCursor } from '../http/cursor.js';
import type { ApiContext } from '../services/deps.js';
import { toTrutoWebhook } from '@hookpost/delivery';
import { createTrutoWebhook, requireTrutoWebhook, updateTrutoWebhook } from '../services/webhooks.js';
import { sendTestNow } from '../services/webhook-delivery.js';

const s = initServer();

export function trutoWebhookRouter(deps: ApiContext) {
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
      const row = await requireTrutoWebhook(db, requireScope(req), body.id);
      return { status: 200, body: { success: await sendTestNow(deps, row) } };
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
