import { SourceListPage, sourceListSearch, type SourceRecord } from '@hookpost/contract';
import { BlockedAddressError, parseRetryAfter, type AddressPolicy } from '@hookpost/delivery';
import { isIP } from 'node:net';
import { readBodyCapped } from '@hookpost/runtime';
import { Agent } from 'undici';
import { SourceError, type ListRequest, type SourceAdapter, type SourcePage, type SourceSettings } from './adapter.js';
import { parseStorableJson, type ParsedAnswer } from './storable-json.js';

/** The shortest wait after a 429 (or a 503 with Retry-After), whatever the source says. */
export const MIN_RETRY_AFTER_MS = 1000;

export interface HttpAdapterOptions {
  policy: AddressPolicy;
  timeoutMs: number;
  /** Largest answer read, in bytes. */
  maxBodyBytes?: number;
  /** Longest wait a source may ask for with Retry-After. */
  maxRetryAfterMs?: number;
  /** Wait when a 429 carries no Retry-After. */
  defaultRetryAfterMs?: number;
}

/**
 * The built-in adapter: the contract's source list protocol over HTTP
 * (`GET {api_url}/objects/{type}`, bearer auth). Connects only to addresses the SSRF
 * policy allows, follows no redirects, reads at most `maxBodyBytes`.
 */
export class HttpSourceAdapter implements SourceAdapter {
  readonly name = 'http';
  private readonly agent: Agent;
  private readonly maxBody: number;

  constructor(private readonly options: HttpAdapterOptions) {
    this.maxBody = options.maxBodyBytes ?? 32 * 1024 * 1024;
    this.agent = new Agent({
      connections: 4,
      keepAliveTimeout: 30_000,
      connect: { timeout: Math.min(options.timeoutMs, 10_000), lookup: options.policy.lookup },
    });
  }

  async list(settings: SourceSettings, req: ListRequest, signal?: AbortSignal): Promise<SourcePage> {
    if (!settings.apiUrl) throw new SourceError('auth', 'the connection has no auth.api_url to poll');
    if (!settings.token) throw new SourceError('auth', 'the connection has no auth.access_token or auth.token');
    let url: URL;
    try {
      url = new URL(`${settings.apiUrl.replace(/\/+$/, '')}/objects/${encodeURIComponent(req.objectType)}`);
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('scheme');
    } catch {
      throw new SourceError('process', `auth.api_url is not an http(s) URL`);
    }
    const literal = url.hostname.replace(/^\[|\]$/g, '');
    if (isIP(literal) && !this.options.policy.allows(literal)) throw new SourceError('read', new BlockedAddressError(literal, literal).message);
    const search = sourceListSearch({
      updated_gte: req.updatedGte?.toISOString(),
      cursor: req.cursor,
      limit: req.limit,
      fields: req.fields?.join(','),
      filter: { ...req.filters },
    });
    // One controller per request, detached from the caller's long-lived signal afterwards
    // (AbortSignal.any would leave a listener on it per request).
    const abort = new AbortController();
    const onAbort = () => abort.abort(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    const timer = setTimeout(() => abort.abort(new Error(`no answer within ${this.options.timeoutMs} ms`)), this.options.timeoutMs);
    try {
      return await this.request(url, search, settings.token, abort.signal);
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    }
  }

  private async request(url: URL, search: string, token: string, signal: AbortSignal): Promise<SourcePage> {
    let res;
    try {
      res = await this.agent.request({
        origin: url.origin,
        path: url.pathname + search,
        method: 'GET',
        headers: { authorization: `Bearer ${token}`, accept: 'application/json', 'user-agent': 'Hookpost-Poller/1' },
        signal,
        headersTimeout: this.options.timeoutMs,
        bodyTimeout: this.options.timeoutMs,
      });
    } catch (err) {
      const e = err as Error & { code?: string; cause?: { code?: string } };
      const blocked = e instanceof BlockedAddressError || e.cause instanceof BlockedAddressError;
      throw new SourceError('read', blocked ? String((e.cause as Error | undefined)?.message ?? e.message) : `${e.code ?? e.name}: ${e.message}`);
    }
    const status = res.statusCode;
    const body = await readBodyCapped(res.body, this.maxBody).catch((err: unknown) => {
      throw new SourceError('read', `reading the answer failed: ${(err as Error).message}`, status);
    });
    if (body === null) throw new SourceError('read', `the answer is larger than ${this.maxBody} bytes`, status);
    if (status === 401 || status === 403) throw new SourceError('auth', `the source refused the credentials (${status})`, status);
    const retryAfterHeader = res.headers['retry-after'];
    const retryAfter = parseRetryAfter(Array.isArray(retryAfterHeader) ? retryAfterHeader[0] : retryAfterHeader);
    if (status === 429 || (status === 503 && retryAfter !== undefined)) {
      const ms = retryAfter !== undefined ? retryAfter * 1000 : (this.options.defaultRetryAfterMs ?? 60_000);
      // At least a second: `Retry-After: 0` (or a date already past) had the poller ask again at once, forever.
      const wait = Math.max(MIN_RETRY_AFTER_MS, Math.min(ms, this.options.maxRetryAfterMs ?? 3_600_000));
      throw new SourceError('throttled', `the source asked to wait (${status})`, status, wait);
    }
    if (status >= 500) throw new SourceError('read', `the source answered ${status}: ${snippet(body)}`, status);
    if (status !== 200) throw new SourceError('process', `the source answered ${status}: ${snippet(body)}`, status);
    let json: ParsedAnswer;
    try {
      json = parseStorableJson(body);
    } catch {
      throw new SourceError('process', `the source's answer is not JSON: ${snippet(body)}`, status);
    }
    // Checked as JSON.parse reads it: a number where the protocol wants a string (an id) is
    // refused, not taken as the placeholder that keeps it exact.
    const page = SourceListPage.safeParse(json.plain);
    if (!page.success) {
      const issue = page.error.issues[0];
      throw new SourceError('process', `the source's page does not match the protocol: ${issue?.path.join('.') ?? ''} ${issue?.message ?? ''}`.trim(), status);
    }
    // The same shape, the protocol's fields the same strings: only the records' other numbers
    // differ, and the schema passes records through as they are (checked again, a 7.6 MB page
    // cost ~200 ms more).
    const records = json.exact === json.plain ? page.data.data : (json.exact as { data: SourceRecord[] }).data;
    return { records, nextCursor: page.data.next_cursor ?? null };
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}

function snippet(body: Buffer): string {
  return body.subarray(0, 200).toString('utf8').replace(/\s+/g, ' ');
}
