import { z } from 'zod';
import { HttpUrl, IsoDateTime, Uuid, pageLimit, queryBoolean, queryDate, pageOffset } from '../common.js';

/** Object types are open (`crm_contact`, `hris_employee`, `passthrough`, …): any snake_case word. */
export const ObjectType = z
  .string()
  .min(1)
  .max(100)
  .regex(/^[a-z][a-z0-9_]*$/, 'must be a lower-case object type such as crm_contact');

/** unified.to's `event`: created | updated | deleted; open, so other words are stored as given. */
export const UnifiedEvent = z
  .string()
  .min(1)
  .max(50)
  .regex(/^[a-z][a-z0-9_]*$/, 'must be a lower-case word such as created');

/** Database targets Hookpost can write to. unified.to's other db_types are refused. */
export const SUPPORTED_DB_TYPES = ['postgres', 'mysql', 'mariadb'] as const;
export const DbType = z.enum(SUPPORTED_DB_TYPES, {
  errorMap: () => ({ message: `must be one of ${SUPPORTED_DB_TYPES.join(', ')} (other database types are not supported)` }),
});

export const WebhookType = z
  .string()
  .min(1)
  .max(30)
  .regex(/^[a-z][a-z0-9_]*$/, 'must be a lower-case word such as virtual or native');

const Identifier = z
  .string()
  .min(1)
  .max(63)
  .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be a SQL identifier (letters, digits, underscore)');

const DbUrl = z
  .string()
  .max(2048)
  .refine((v) => /^(postgres|postgresql|mysql|mariadb):\/\//i.test(v), 'must be a postgres:// or mysql:// connection URL');

/**
 * The writable fields of a unified.to Webhook, current model and the 2023 one
 * (`events[]`, `include_raw`, `subscriptions`, `meta`). Read-only fields a client
 * echoes back (`id`, `created_at`, `is_healthy`, …) are accepted and ignored.
 */
/**
 * A webhook's `filters`: record field → the text it must equal. A key `__proto__` is refused
 * (zod builds records without it: the filter was dropped in silence, and the webhook got the
 * events it filtered out).
 */
const WebhookFilters = z.preprocess(
  (value, ctx) => {
    if (value !== null && typeof value === 'object' && Object.hasOwn(value, '__proto__')) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['__proto__'], message: 'a filter cannot be named __proto__' });
    }
    return value;
  },
  z.record(z.string().max(1000)).refine((f) => Object.keys(f).length <= 50, 'at most 50 filters'),
);

const UnifiedWebhookFields = z.object({
  connection_id: Uuid,
  object_type: ObjectType,
  event: UnifiedEvent.optional(),
  events: z.array(UnifiedEvent).min(1).max(20).optional(),
  hook_url: HttpUrl.optional(),
  interval: z.number().positive('must be greater than 0').max(60 * 24 * 31, 'must be at most 44640 minutes').optional(),
  page_max_limit: z.number().int('must be an integer').min(1, 'must be at least 1').max(10_000, 'must be at most 10000').optional(),
  filters: WebhookFilters.optional(),
  fields: z.string().max(4000).optional(),
  include_raw: z.boolean().optional(),
  webhook_type: WebhookType.optional(),
  db_type: DbType.optional(),
  db_url: DbUrl.optional(),
  db_schema: Identifier.optional(),
  db_name_prefix: z.string().max(40).regex(/^[A-Za-z0-9_]*$/, 'must contain only letters, digits and underscores').optional(),
  is_paused: z.boolean().optional(),
  is_beta: z.boolean().optional(),
  subscriptions: z.array(z.string().max(500)).max(100).optional(),
  meta: z.record(z.unknown()).optional(),
});

type Fields = z.infer<typeof UnifiedWebhookFields>;

/** Cross-field rules shared by create, PUT and (for the fields present) PATCH. */
function checkTargets(w: Partial<Fields>, ctx: z.RefinementCtx, requireAll: boolean): void {
  if (requireAll && w.event === undefined && w.events === undefined) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['event'], message: 'Required (or give events[])' });
  }
  if (w.db_type !== undefined && w.db_url === undefined && requireAll) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['db_url'], message: 'Required when db_type is set' });
  }
  if (w.db_url !== undefined && w.db_type === undefined && requireAll) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['db_type'], message: 'Required when db_url is set' });
  }
  if (requireAll && w.hook_url === undefined && w.db_url === undefined) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['hook_url'], message: 'Required (or give db_type and db_url)' });
  }
}

/** Body of POST and PUT /unified/webhook: a whole webhook. */
export const UnifiedWebhookWrite = UnifiedWebhookFields.superRefine((w, ctx) =>
  checkTargets(w, ctx, true),
);
export type UnifiedWebhookWrite = z.infer<typeof UnifiedWebhookWrite>;

/** Body of PATCH /unified/webhook/{id}: any subset; `null` clears an optional field. */
export const UnifiedWebhookPatch = z
  .object({
    connection_id: UnifiedWebhookFields.shape.connection_id.optional(),
    object_type: UnifiedWebhookFields.shape.object_type.optional(),
    event: UnifiedEvent.optional(),
    events: UnifiedWebhookFields.shape.events,
    hook_url: HttpUrl.nullable().optional(),
    interval: UnifiedWebhookFields.shape.interval,
    page_max_limit: UnifiedWebhookFields.shape.page_max_limit,
    filters: UnifiedWebhookFields.shape.filters,
    fields: z.string().max(4000).nullable().optional(),
    include_raw: z.boolean().optional(),
    webhook_type: WebhookType.optional(),
    db_type: DbType.nullable().optional(),
    db_url: DbUrl.nullable().optional(),
    db_schema: Identifier.nullable().optional(),
    db_name_prefix: UnifiedWebhookFields.shape.db_name_prefix.unwrap().nullable().optional(),
    is_paused: z.boolean().optional(),
    is_beta: z.boolean().optional(),
    subscriptions: UnifiedWebhookFields.shape.subscriptions,
    meta: z.record(z.unknown()).nullable().optional(),
  })
  .superRefine((w, ctx) => checkTargets(w as Partial<Fields>, ctx, false));
export type UnifiedWebhookPatch = z.infer<typeof UnifiedWebhookPatch>;

/** A webhook as the unified.to face shows it. Optional fields are omitted, never null. */
export const UnifiedWebhook = z.object({
  id: Uuid,
  workspace_id: Uuid,
  connection_id: Uuid,
  environment: z.string(),
  integration_type: z.string().optional(),
  object_type: z.string(),
  event: z.string(),
  events: z.array(z.string()).optional(),
  hook_url: z.string().optional(),
  interval: z.number().optional(),
  page_max_limit: z.number().optional(),
  filters: z.record(z.string()).optional(),
  fields: z.string().optional(),
  include_raw: z.boolean().optional(),
  webhook_type: z.string().optional(),
  db_type: z.string().optional(),
  /** Credentials are redacted: `postgres://user:***@host/db`. */
  db_url: z.string().optional(),
  db_schema: z.string().optional(),
  db_name_prefix: z.string().optional(),
  is_healthy: z.boolean(),
  is_paused: z.boolean(),
  is_beta: z.boolean().optional(),
  checked_at: IsoDateTime.optional(),
  /** The most recent virtual-webhook runs, newest first, one line each. */
  runs: z.array(z.string()),
  subscriptions: z.array(z.string()).optional(),
  meta: z.record(z.unknown()).optional(),
  created_at: IsoDateTime,
  updated_at: IsoDateTime,
});
export type UnifiedWebhook = z.infer<typeof UnifiedWebhook>;

export const UNIFIED_SORT_FIELDS = ['name', 'updated_at', 'created_at'] as const;

export const UnifiedWebhookListQuery = z.object({
  limit: pageLimit.optional(),
  offset: pageOffset.optional(),
  updated_gte: queryDate.optional(),
  created_lte: queryDate.optional(),
  sort: z.enum(UNIFIED_SORT_FIELDS).optional(),
  order: z.enum(['asc', 'desc']).optional(),
  object: z.string().max(100).optional(),
  integration_type: z.string().max(100).optional(),
  connection_id: Uuid.optional(),
  env: z.string().max(100).optional(),
  is_healthy: queryBoolean.optional(),
});
export type UnifiedWebhookListQuery = z.infer<typeof UnifiedWebhookListQuery>;

export const UnifiedWebhookCreateQuery = z.object({
  include_all: queryBoolean.optional(),
});
