import type { SourceRecord } from '@hookpost/contract';

/** What a poll asks a source for: one page of one object type's changes. */
export interface ListRequest {
  objectType: string;
  /** Records changed at or after this instant; absent: every record (initial sync). */
  updatedGte?: Date | undefined;
  /** Continues a listing (the previous page's `nextCursor`). */
  cursor?: string | undefined;
  limit: number;
  /** Fields the webhooks need (the source may omit the rest); absent: all. */
  fields?: readonly string[] | undefined;
  /** String equality on record fields, passed to the source. */
  filters: Readonly<Record<string, string>>;
}

export interface SourcePage {
  records: SourceRecord[];
  /** Null on the last page. */
  nextCursor: string | null;
}

/**
 * Why a source call failed, in the classes a webhook's health speaks of:
 * `read` (the source could not be read: network, timeout, 5xx),
 * `auth` (credentials missing or refused: 401/403),
 * `process` (the answer made no sense: bad JSON, wrong shape, a 4xx for our request).
 * `throttled` is not a failure: the source asked us to wait (429, or 503 with Retry-After).
 */
export type SourceFailureKind = 'read' | 'auth' | 'process' | 'throttled';

export class SourceError extends Error {
  constructor(
    readonly kind: SourceFailureKind,
    message: string,
    readonly status?: number,
    /** For `throttled`: how long the source asked us to wait. */
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = 'SourceError';
  }
}

/** Settings a connection gives its adapter (from its encrypted `auth`). */
export interface SourceSettings {
  apiUrl?: string | undefined;
  token?: string | undefined;
}

/**
 * A source of records for virtual webhooks. Implementations list changes; everything
 * else (scheduling, change detection, delivery) is Hookpost's.
 */
export interface SourceAdapter {
  readonly name: string;
  list(settings: SourceSettings, request: ListRequest, signal?: AbortSignal): Promise<SourcePage>;
  close(): Promise<void>;
}
