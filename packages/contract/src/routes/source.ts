import { initContract } from '@ts-rest/core';
import { z } from 'zod';
import { IsoDateTime } from '../common.js';

/**
 * The source list protocol: what Hookpost's built-in HTTP source adapter calls to
 * find changed records, and what a partner implements to become a source of virtual
 * webhooks. The mock provider (apps/mock-provider) implements it.
 *
 * `GET {api_url}/objects/{object_type}` with `Authorization: Bearer {token}` lists the
 * records of one object type, oldest change first:
 *
 * - ordered by `(updated_at, id)` ascending;
 * - `updated_gte` (inclusive) keeps records changed at or after that instant;
 * - `cursor` continues a listing where the previous page's `next_cursor` left off;
 *   the other parameters must be repeated unchanged;
 * - `limit` records per page (1–1000, default 100);
 * - `fields` (comma-separated) lets the source omit other fields (`id`,
 *   `created_at`, `updated_at` and `deleted_at` are always sent);
 * - `filter[<name>]=<value>` keeps records whose field `name` equals `value` (string
 *   equality); a source answers 400 to a filter it cannot apply;
 * - deleted records stay listed as tombstones: `deleted_at` set and `updated_at` at
 *   or after it, so a listing by `updated_gte` sees the deletion.
 *
 * Answers Hookpost understands: 200 with a page; 401/403 (credentials refused: the
 * connection is marked unhealthy); 429 or 503 with `Retry-After` (seconds or an HTTP
 * date: Hookpost waits that long before asking this connection again); other 4xx/5xx
 * and network errors (a failed read, retried at the next interval).
 */
export const SOURCE_PAGE_MAX = 1000;
export const SOURCE_PAGE_DEFAULT = 100;

/** One record of a source. Fields other than the fixed four are free-form. */
export const SourceRecord = z
  .object({
    id: z.string().min(1).max(500),
    created_at: IsoDateTime,
    updated_at: IsoDateTime,
    /** Set when the record was deleted (a tombstone). */
    deleted_at: IsoDateTime.nullish(),
    /** The source's original representation, passed on when a webhook asks `include_raw`. */
    raw: z.record(z.unknown()).optional(),
  })
  .passthrough();
export type SourceRecord = z.infer<typeof SourceRecord>;

export const SourceListQuery = z.object({
  updated_gte: IsoDateTime.optional(),
  cursor: z.string().max(2000).optional(),
  limit: z.coerce.number().int().min(1).max(SOURCE_PAGE_MAX).optional(),
  fields: z.string().max(4000).optional(),
  filter: z.record(z.string().max(1000)).optional(),
});
export type SourceListQuery = z.infer<typeof SourceListQuery>;

export const SourceListPage = z.object({
  data: z.array(SourceRecord),
  /** Absent or null on the last page. */
  next_cursor: z.string().max(2000).nullish(),
});
export type SourceListPage = z.infer<typeof SourceListPage>;

/** A source's error answer (informational; Hookpost classifies by status code). */
export const SourceError = z.object({ error: z.string(), message: z.string().optional() }).passthrough();

const c = initContract();

export const sourceRoutes = c.router({
  list: {
    method: 'GET',
    path: '/objects/:object_type',
    pathParams: z.object({ object_type: z.string().min(1).max(100) }),
    query: SourceListQuery,
    headers: z.object({ authorization: z.string().regex(/^Bearer .+/, 'must be "Bearer <token>"') }),
    responses: { 200: SourceListPage, 400: SourceError, 401: SourceError, 429: SourceError },
    summary: 'List records of one object type changed since a point, oldest change first',
  },
});

/** Encodes a list request's query string the way the protocol defines it. */
export function sourceListSearch(q: SourceListQuery): string {
  const p = new URLSearchParams();
  if (q.updated_gte) p.set('updated_gte', q.updated_gte);
  if (q.cursor) p.set('cursor', q.cursor);
  if (q.limit !== undefined) p.set('limit', String(q.limit));
  if (q.fields) p.set('fields', q.fields);
  for (const [k, v] of Object.entries(q.filter ?? {}).sort(([a], [b]) => a.localeCompare(b))) p.set(`filter[${k}]`, v);
  const s = p.toString();
  return s ? `?${s}` : '';
}

/** Parses `filter[<name>]=<value>` pairs out of a protocol query string. */
export function sourceListFilters(search: URLSearchParams): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of search) {
    const m = /^filter\[(.+)\]$/.exec(k);
    if (m?.[1]) out[m[1]] = v;
  }
  return out;
}
