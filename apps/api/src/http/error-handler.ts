import { isConnectionError, isDatabaseRefusingWrites, isDeadlock } from '@hookpost/db';
import type { Logger } from '@hookpost/runtime';
import { isAppRoute, type AppRoute, type AppRouter } from '@ts-rest/core';
import { RequestValidationError } from '@ts-rest/express';
import type { ErrorRequestHandler, RequestHandler } from 'express';
import { ApiError, validationError, zodIssues } from './errors.js';

interface BodyParserError {
  type?: string;
  status?: number;
  limit?: number;
}

/** Maps anything thrown into the one envelope; only unknown errors are 500s and logged as such. */
export function errorHandler(logger: Logger): ErrorRequestHandler {
  return (err: unknown, req, res, next) => {
    if (res.headersSent) return next(err);
    const apiError = toApiError(err, logger, req.method, req.originalUrl);
    res.status(apiError.status).set(apiError.headers()).json(apiError.toEnvelope(req.id === undefined ? undefined : String(req.id)));
  };
}

/** The client-facing error for anything thrown while serving a request (shared with the fast ingest path). */
export function toApiError(err: unknown, logger: Logger, method: string, url: string): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof RequestValidationError) {
    return validationError([
      ...(err.pathParams ? zodIssues('path', err.pathParams) : []),
      ...(err.headers ? zodIssues('header', err.headers) : []),
      ...(err.query ? zodIssues('query', err.query) : []),
      ...(err.body ? zodIssues('body', err.body) : []),
    ]);
  }
  if (isBodyParserError(err)) return bodyParserError(err);
  // A body whose Content-Encoding it is not (gzip that does not inflate): zlib's error, no `type`.
  if (isZlibError(err)) return new ApiError('validation_failed', 'the body is not encoded as Content-Encoding says', 'header.content-encoding');
  // Express's own 4xx, e.g. a path parameter with broken percent-encoding.
  if (err instanceof URIError || clientStatus(err) !== undefined) return new ApiError('validation_failed', 'malformed request path', 'path');
  if (isConnectionError(err)) {
    // Postgres restarting, failing over or dropping sessions: the statement did not
    // commit, or its fate is unknown and a retry with the same Idempotency-Key or event
    // id answers as the first did. Not a bug: a warning, and a 503 to retry.
    logger.warn({ err, method, url }, 'database unavailable');
    return new ApiError('unavailable', 'the database is unavailable; retry shortly');
  }
  if (isDatabaseRefusingWrites(err)) {
    // Read-only (a failover's standby), disk full, out of memory: nothing was written.
    logger.warn({ err, method, url }, 'database refused the write');
    return new ApiError('unavailable', 'the database cannot take writes now; retry shortly');
  }
  if (isDeadlock(err)) {
    // Rolled back whole by the database, after inTransaction's own retries: nothing changed.
    logger.warn({ err, method, url }, 'deadlock outlived its retries');
    return new ApiError('unavailable', 'the request collided with concurrent changes; retry it');
  }
  logger.error({ err, method, url }, 'unhandled error');
  return new ApiError('internal_error', 'internal error');
}

function clientStatus(err: unknown): number | undefined {
  const status = typeof err === 'object' && err !== null ? (err as { status?: unknown }).status : undefined;
  return typeof status === 'number' && status >= 400 && status < 500 ? status : undefined;
}

function isZlibError(err: unknown): boolean {
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  return typeof code === 'string' && code.startsWith('Z_');
}

function isBodyParserError(err: unknown): err is BodyParserError {
  return typeof err === 'object' && err !== null && typeof (err as BodyParserError).type === 'string' && 'status' in err;
}

function bodyParserError(err: BodyParserError): ApiError {
  switch (err.type) {
    case 'entity.too.large':
      return new ApiError('payload_too_large', `request body exceeds ${err.limit ?? 'the'} bytes`, 'body');
    case 'entity.parse.failed':
      return new ApiError('malformed_json', 'request body is not valid JSON', 'body');
    case 'encoding.unsupported':
      return new ApiError('unsupported_media_type', 'unsupported Content-Encoding (gzip, deflate or identity)', 'header.content-encoding');
    case 'charset.unsupported':
      return new ApiError('unsupported_media_type', 'unsupported charset (the body must be UTF-8 JSON)', 'header.content-type');
    default:
      return new ApiError('validation_failed', 'unreadable request body', 'body');
  }
}

/** 404 in the envelope for a path nobody serves; 405 with `Allow` for a known path asked with another method. */
export function notFoundHandler(router: AppRouter): RequestHandler {
  const routes = routesOf(router).map((r) => ({ method: r.method, pattern: pathPattern(r.path) }));
  return (req, res, next) => {
    const allowed: string[] = [...new Set(routes.filter((r) => r.pattern.test(req.path)).map((r) => r.method))];
    if (allowed.length === 0) return next(new ApiError('not_found', `no route for ${req.method} ${req.path}`));
    if (allowed.includes('GET')) allowed.push('HEAD');
    res.setHeader('allow', allowed.join(', '));
    next(new ApiError('method_not_allowed', `${req.path} answers ${allowed.join(', ')}, not ${req.method}`));
  };
}

function routesOf(router: AppRouter): AppRoute[] {
  return Object.values(router).flatMap((r) => (isAppRoute(r) ? [r] : routesOf(r)));
}

/** A contract path (`/webhook/:id`) as a regular expression over request paths; a parameter is one segment. */
function pathPattern(path: string): RegExp {
  const source = path
    .split('/')
    .map((segment) => (segment.startsWith(':') ? '[^/]+' : segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
    .join('/');
  return new RegExp(`^${source}/?$`, 'i'); // as Express matches: case-insensitive, trailing slash allowed
}
