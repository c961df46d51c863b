import { z } from 'zod';
import { IsoDateTime, Uuid, pageLimit, queryDate, pageOffset } from '../common.js';

const Word = z.string().min(1).max(100);

/**
 * Credentials and settings of a connection, in unified.to's `auth` shape. Stored
 * encrypted; never returned.
 */
export const ConnectionAuth = z
  .object({
    access_token: z.string().max(10_000).optional(),
    refresh_token: z.string().max(10_000).optional(),
    token: z.string().max(10_000).optional(),
    key: z.string().max(10_000).optional(),
    api_url: z.string().max(2048).optional(),
    client_id: z.string().max(1000).optional(),
    client_secret: z.string().max(10_000).optional(),
    expiry_date: z.string().datetime({ offset: true }).optional(),
    expires_in: z.number().optional(),
    emails: z.array(z.string()).optional(),
    meta: z.record(z.unknown()).optional(),
  })
  .passthrough();
export type ConnectionAuth = z.infer<typeof ConnectionAuth>;

const ConnectionFields = z.object({
  integration_type: Word.regex(/^[a-z0-9][a-z0-9_.-]*$/i, 'must be an integration identifier such as hubspot'),
  integration_name: z.string().max(200).optional(),
  categories: z.array(Word).max(50),
  permissions: z.array(Word).max(1000),
  auth: ConnectionAuth.optional(),
  auth_aws_arn: z.string().max(2048).optional(),
  external_xref: z.string().max(500).optional(),
  is_paused: z.boolean().optional(),
  /**
   * Hookpost: which source adapter polls this connection for virtual webhooks. `http`
   * (the default) speaks the contract's source list protocol at `auth.api_url` with
   * `auth.access_token` (or `auth.token`) as the bearer token.
   */
  source_adapter: z.enum(['http']).optional(),
});

/** Body of POST and PUT /unified/connection. Read-only fields sent back are ignored. */
export const ConnectionWrite = ConnectionFields;
export type ConnectionWrite = z.infer<typeof ConnectionWrite>;

/**
 * Body of PATCH /unified/connection/{id}. The unified.to SDK always sends
 * `categories` and `permissions` (the type requires them), so an empty array on
 * PATCH means "unchanged", never "wipe".
 */
export const ConnectionPatch = ConnectionFields.partial();
export type ConnectionPatch = z.infer<typeof ConnectionPatch>;

/** A connection as the unified.to face shows it. Credentials are never included. */
export const Connection = z.object({
  id: Uuid,
  workspace_id: Uuid,
  environment: z.string(),
  integration_type: z.string(),
  integration_name: z.string().optional(),
  categories: z.array(z.string()),
  permissions: z.array(z.string()),
  external_xref: z.string().optional(),
  is_paused: z.boolean(),
  source_adapter: z.string(),
  last_healthy_at: IsoDateTime.optional(),
  last_unhealthy_at: IsoDateTime.optional(),
  created_at: IsoDateTime,
  updated_at: IsoDateTime,
});
export type Connection = z.infer<typeof Connection>;

const stringList = z
  .union([z.string().max(100), z.array(z.string().max(100)).max(50)])
  .transform((v) => (Array.isArray(v) ? v : v.split(',').filter(Boolean)));

export const ConnectionListQuery = z.object({
  limit: pageLimit.optional(),
  offset: pageOffset.optional(),
  updated_gte: queryDate.optional(),
  sort: z.enum(['name', 'updated_at', 'created_at']).optional(),
  order: z.enum(['asc', 'desc']).optional(),
  categories: stringList.optional(),
  env: z.string().max(100).optional(),
  external_xref: z.string().max(500).optional(),
});
export type ConnectionListQuery = z.infer<typeof ConnectionListQuery>;
