/**
 * Sends one rendered delivery: undici keep-alive pools, bounded connect and total
 * timeouts, redirects not followed, response read up to a cap, and every connection
 * made only to an address the policy allows (checked on the address actually used).
 */
import { isIP } from 'node:net';
import { StringDecoder } from 'node:string_decoder';
import { Agent, errors as undiciErrors, type Dispatcher } from 'undici';
import { BlockedAddressError, type AddressPolicy } from './address-policy.js';
import type { RenderedDelivery } from './payloads.js';
import { parseRetryAfter } from './retry-policy.js';

/** Why an attempt got no answer; `secret_unreadable`: not sent, its webhook's secret could not be decrypted. */
export type FailureClass = 'timeout' | 'connect_error' | 'network_error' | 'blocked_address' | 'invalid_url' | 'secret_unreadable';

export interface SendResult {
  statusCode?: number;
  durationMs: number;
  /** First bytes of the response body (≤ maxSnippetBytes), as text. */
  responseSnippet?: string;
  retryAfterSeconds?: number;
  failure?: { class: FailureClass; message: string };
}

export interface SenderOptions {
  policy: AddressPolicy;
  connectTimeoutMs?: number;
  /** Whole request: connect, send, response headers and the capped body. */
  timeoutMs?: number;
  /** Bytes of the response body kept for the attempt log. */
  maxSnippetBytes?: number;
  /** Bytes read (and discarded) past the snippet before the connection is dropped instead. */
  maxDrainBytes?: number;
  connectionsPerOrigin?: number;
}

export class Sender {
  private readonly agent: Agent;
  private readonly timeoutMs: number;
  private readonly maxSnippet: number;
  private readonly maxDrain: number;
  private readonly policy: AddressPolicy;
  private readonly targets = new Map<string, Target | { failure: NonNullable<SendResult['failure']> }>();

  constructor(options: SenderOptions) {
    this.policy = options.policy;
    this.timeoutMs = options.timeoutMs ?? 15_000;
    this.maxSnippet = options.maxSnippetBytes ?? 4096;
    this.maxDrain = options.maxDrainBytes ?? 64 * 1024;
    this.agent = new Agent({
      connections: options.connectionsPerOrigin ?? 64,
      pipelining: 1,
      keepAliveTimeout: 30_000,
      keepAliveMaxTimeout: 60_000,
      connect: { timeout: options.connectTimeoutMs ?? 5_000, lookup: this.policy.lookup },
    });
  }

  async send(url: string, delivery: RenderedDelivery): Promise<SendResult> {
    const started = performance.now();
    const elapsed = () => Math.round(performance.now() - started);
    const target = this.targetOf(url);
    if ('failure' in target) return { durationMs: 0, failure: target.failure };
    return new Promise<SendResult>((resolve) => {
      const maxSnippet = this.maxSnippet;
      const maxRead = this.maxSnippet + this.maxDrain;
      let controller: Dispatcher.DispatchController | undefined;
      let statusCode = 0;
      let retryAfter: string | undefined;
      let kept: Buffer[] | undefined;
      let keptBytes = 0;
      let seen = 0;
      let timedOut = false;
      let settled = false;
      const answered = () => {
        const snippet = kept ? snippetText(Buffer.concat(kept)) : '';
        finish({
          statusCode,
          durationMs: elapsed(),
          ...(snippet ? { responseSnippet: snippet } : {}),
          ...(statusCode === 429 || statusCode === 503 ? { retryAfterSeconds: parseRetryAfter(retryAfter) } : {}),
        });
      };
      const finish = (result: SendResult) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(result);
      };
      // The whole request (connect, send, headers, the capped body) within timeoutMs.
      const timer = setTimeout(() => {
        timedOut = true;
        controller?.abort(new TimeoutError());
        finish({ durationMs: elapsed(), failure: { class: 'timeout', message: 'timed out' } });
      }, this.timeoutMs);
      // The dispatcher API, not agent.request(): no response stream, abort signal or
      // promise per send (the worker's largest per-delivery cost after the syscalls).
      const options = { origin: target.origin, path: target.path, method: 'POST' as const, headers: delivery.headers, body: delivery.body, headersTimeout: this.timeoutMs, bodyTimeout: this.timeoutMs };
      try {
        this.agent.dispatch(options, {
          onRequestStart(c) {
            controller = c;
            if (timedOut) c.abort(new TimeoutError());
          },
          onResponseStart(_c, code, headers) {
            statusCode = code;
            const ra = headers['retry-after'];
            retryAfter = Array.isArray(ra) ? ra[0] : ra;
          },
          onResponseData(c, chunk) {
            seen += chunk.length;
            if (keptBytes < maxSnippet) {
              const part = chunk.subarray(0, maxSnippet - keptBytes);
              (kept ??= []).push(part);
              keptBytes += part.length;
            }
            // Past the drain allowance: answer with what was kept and drop the connection.
            if (seen > maxRead) {
              answered();
              c.abort(new Error('response body too large; connection dropped'));
            }
          },
          onResponseEnd() {
            answered();
          },
          onResponseError(_c, err) {
            finish({ durationMs: elapsed(), failure: unaddressed(classify(err, timedOut), target.host) });
          },
        });
      } catch (err) {
        finish({ durationMs: elapsed(), failure: unaddressed(classify(err, false), target.host) });
      }
    });
  }

  /** Where a URL sends to, or why it cannot be sent to; parsed once per URL (webhook URLs repeat). */
  private targetOf(url: string): Target | { failure: NonNullable<SendResult['failure']> } {
    let known = this.targets.get(url);
    if (known) return known;
    known = parseTarget(url, this.policy);
    if (this.targets.size >= 10_000) this.targets.clear();
    this.targets.set(url, known);
    return known;
  }

  close(): Promise<void> {
    return this.agent.close();
  }
}

class TimeoutError extends Error {
  override readonly name = 'TimeoutError';
  constructor() {
    super('timed out');
  }
}

function classify(err: unknown, aborted: boolean): { class: FailureClass; message: string } {
  const e = err as { code?: string; message?: string; cause?: unknown };
  const message = String(e?.message ?? err).slice(0, 500);
  const cause = e?.cause as { code?: string } | undefined;
  if (err instanceof BlockedAddressError || cause instanceof BlockedAddressError || e?.code === 'EBLOCKEDADDRESS') {
    return { class: 'blocked_address', message };
  }
  if (
    aborted ||
    err instanceof undiciErrors.HeadersTimeoutError ||
    err instanceof undiciErrors.BodyTimeoutError ||
    e?.code === 'UND_ERR_CONNECT_TIMEOUT' ||
    (err as Error)?.name === 'TimeoutError' ||
    (err as Error)?.name === 'AbortError'
  ) {
    return { class: 'timeout', message: aborted ? 'timed out' : message };
  }
  const code = e?.code ?? cause?.code;
  if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH') {
    return { class: 'connect_error', message: `${code}: ${message}` };
  }
  return { class: 'network_error', message: code ? `${code}: ${message}` : message };
}

/** Where a URL sends to; `host`: its name, or null for an IP literal. */
interface Target {
  origin: string;
  path: string;
  host: string | null;
}

/** A word of an error message that may be an address (`10.1.2.3:443`, `[fd00::1]:443`, `::1:4000`). */
const MESSAGE_WORD = /[0-9A-Fa-f:.[\]]{2,}/g;

/** Whether a word is an IP address, with or without brackets and a port. */
function isAddressWord(word: string): boolean {
  const bare = word.replace(/^\[|\]$/g, '');
  if (isIP(bare)) return true; // ::1:4000 is itself a valid IPv6 address
  const m = /^\[?([^\]]+?)\]?:\d+:?$/.exec(word);
  return m !== null && isIP(m[1] as string) !== 0;
}

/**
 * A failure as tenants see it (the attempt log): Node and undici name the address a host name
 * resolved to (`connect ECONNREFUSED 10.1.2.3:443`, `attempted address: …`), which maps an
 * operator's internal DNS once a private range is allow-listed. The name stands in for it.
 */
function unaddressed(failure: NonNullable<SendResult['failure']>, host: string | null): NonNullable<SendResult['failure']> {
  return host === null ? failure : { ...failure, message: failure.message.replace(MESSAGE_WORD, (w) => (isAddressWord(w) ? host : w)) };
}

function parseTarget(url: string, policy: AddressPolicy): Target | { failure: NonNullable<SendResult['failure']> } {
  let target: URL;
  try {
    target = new URL(url);
    if (target.protocol !== 'http:' && target.protocol !== 'https:') throw new Error('scheme');
  } catch {
    return { failure: { class: 'invalid_url', message: `not an http(s) URL: ${url}` } };
  }
  // IP literals skip DNS, so the lookup guard never sees them: check here.
  const literal = target.hostname.replace(/^\[|\]$/g, '');
  if (isIP(literal) && !policy.allows(literal)) {
    return { failure: { class: 'blocked_address', message: new BlockedAddressError(literal, literal).message } };
  }
  return { origin: target.origin, path: target.pathname + target.search, host: isIP(literal) ? null : target.hostname };
}

/**
 * The kept start of a response body as text for the attempt log: a character cut by the cap
 * is left out (StringDecoder holds back an incomplete sequence) and invalid bytes read as
 * U+FFFD. (NUL, which Postgres cannot store in text, is replaced where attempts are written.)
 */
export function snippetText(bytes: Buffer): string {
  return new StringDecoder('utf8').write(bytes);
}
