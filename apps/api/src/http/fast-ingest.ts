/**
 * `POST /v1/events` and `POST /v1/events/batch` served without Express on their common
 * path: a JSON body of known length from a key already in the cache. The route is the
 * API's hottest by far, and Express's router, middleware chain and response helpers
 * cost more CPU per request than the ingest itself (profiled: ~half of the API's time
 * at one event per request).
 *
 * Nothing is decided differently here: the body and headers are validated with the
 * contract's schemas, the ingestor is the same, and errors go through the same mapping
 * (`toApiError`) into the one envelope. Anything else — an unknown or uncached key,
 * another content type or encoding, no Content-Length, a query string — is handed to
 * Express untouched, before a byte of the body is read.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { contract, type EventIn } from '@hookpost/contract';
import { readBodyCapped, type Logger } from '@hookpost/runtime';
import { credentialFrom, type ApiKeyCache } from './auth.js';
import { scopeOf } from './context.js';
import { toApiError } from './error-handler.js';
import { ApiError, validationError, withRequestId, zodIssues } from './errors.js';
import { withExactData } from './exact-numbers.js';
import { bodyError } from './unstorable-bodies.js';
import type { EventIngestor } from '../services/ingest.js';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** The wrapped handler, and how many requests took the fast path (for tests and diagnostics). */
export interface FastIngestHandler extends Handler {
  served(): number;
}

export interface FastIngestOptions {
  ingestor: EventIngestor;
  apiKeyCache: ApiKeyCache;
  logger: Logger;
  bodyLimitBytes: number;
  batchBodyLimitBytes: number;
  /** Sets and returns the request id (the same function Express uses). */
  requestId: (req: IncomingMessage, res: ServerResponse) => string;
}

const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json\s*(?:;\s*charset=utf-8\s*)?$/i;

/** Wraps the Express app: ingest requests it can serve alone go the short way, the rest to `app`. */
export function withFastIngest(app: Handler, o: FastIngestOptions): FastIngestHandler {
  let served = 0;
  const routes = {
    '/v1/events': { single: true, limit: o.bodyLimitBytes, route: contract.hookpost.ingestEvent },
    '/v1/events/batch': { single: false, limit: o.batchBodyLimitBytes, route: contract.hookpost.ingestEvents },
  } as const;
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const route = req.method === 'POST' ? routes[req.url as keyof typeof routes] : undefined;
    const length = Number(req.headers['content-length']);
    const key = route ? credentialFrom(req) : undefined;
    const auth = key ? o.apiKeyCache.get(key) : undefined;
    if (
      !route ||
      !auth ||
      !(length > 0 && length <= route.limit) ||
      !JSON_TYPE.test(req.headers['content-type'] ?? '') ||
      (req.headers['content-encoding'] !== undefined && req.headers['content-encoding'] !== 'identity')
    ) {
      app(req, res);
      return;
    }
    served++;
    const id = o.requestId(req, res);
    const reply = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      const text = JSON.stringify(body);
      res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
      res.end(text);
    };
    const fail = (err: unknown) => {
      if (res.destroyed) return; // the client went away (an aborted upload): nobody to answer
      const apiError = toApiError(err, o.logger, req.method ?? 'POST', req.url ?? '');
      reply(apiError.status, apiError.toEnvelope(id), apiError.headers());
    };
    readBody(req, length)
      .then((raw) => {
        let json: unknown;
        const text = raw.toString('utf8');
        try {
          // A leading byte order mark, as Express's parser allows.
          json = JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
        } catch {
          throw new ApiError('malformed_json', 'request body is not valid JSON', 'body');
        }
        const headers = route.route.headers.safeParse(req.headers);
        const body = route.route.body.safeParse(json);
        if (!headers.success || !body.success) {
          throw validationError([...(headers.success ? [] : zodIssues('header', headers.error)), ...(body.success ? [] : zodIssues('body', body.error))]);
        }
        const unstorable = bodyError(raw, json);
        if (unstorable) throw unstorable;
        const events = withExactData(text, route.single ? [body.data as EventIn] : (body.data as { events: EventIn[] }).events, route.single);
        return o.ingestor.submit({ scope: scopeOf(auth), events, single: route.single, idempotencyKey: headers.data['idempotency-key'], bodyBytes: raw.length });
      })
      .then((answer) => reply(answer.status, withRequestId(answer.body, id)), fail)
      .catch((err: unknown) => {
        o.logger.error({ err, method: req.method, url: req.url }, 'could not answer an ingest request');
        res.destroy();
      });
  };
  return Object.assign(handler, { served: () => served });
}

/**
 * The body: exactly `length` bytes (Node's parser delivers no more than Content-Length).
 * An aborted upload is reported as body-parser reports it, so the answer (if the client
 * still listens) is Express's.
 */
async function readBody(req: IncomingMessage, length: number): Promise<Buffer> {
  const raw = await readBodyCapped(req, length).catch((err: Error) => {
    throw Object.assign(err, { type: 'request.aborted', status: 400 });
  });
  if (raw === null || raw.length !== length) throw new ApiError('validation_failed', 'request body length does not match Content-Length', 'body');
  return raw;
}
