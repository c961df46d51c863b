import type { ConnectionAuth } from '@hookpost/contract';
import type { AddressPolicy } from '@hookpost/delivery';
import type { SourceAdapter, SourceSettings } from './adapter.js';
import { HttpSourceAdapter } from './http-adapter.js';

/** Adapter names a connection's `source_adapter` may take. */
export const SOURCE_ADAPTERS = ['http'] as const;
export type SourceAdapterName = (typeof SOURCE_ADAPTERS)[number];

/** The adapters of one worker process, by name. */
export function createSourceAdapters(o: { policy: AddressPolicy; timeoutMs: number; maxRetryAfterMs: number }): Map<string, SourceAdapter> {
  return new Map<string, SourceAdapter>([['http', new HttpSourceAdapter({ policy: o.policy, timeoutMs: o.timeoutMs, maxRetryAfterMs: o.maxRetryAfterMs })]]);
}

/** A connection's decrypted `auth` as adapter settings: `api_url` and a bearer token. */
export function sourceSettings(auth: ConnectionAuth | null): SourceSettings {
  return { apiUrl: auth?.api_url, token: auth?.access_token ?? auth?.token ?? auth?.key };
}
