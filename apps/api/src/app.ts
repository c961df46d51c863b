import { contract } from '@hookpost/contract';
import { createExpressEndpoints } from '@ts-rest/express';
import express, { type Express } from 'express';
import { pinoHttp } from 'pino-http';
import swaggerUi from 'swagger-ui-express';
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ApiKeyCache, requireApiKey } from './http/auth.js';
import { errorHandler, notFoundHandler } from './http/error-handler.js';
import { ApiError } from './http/errors.js';
import { refuseUnstorableBodies, rememberRawBody } from './http/unstorable-bodies.js';
import { withFastIngest, type FastIngestHandler } from './http/fast-ingest.js';
import { buildOpenApiDocument } from './openapi.js';
import { hookpostRouter } from './routes/hookpost.js';
import { systemRouter } from './routes/system.js';
import { trutoWebhookRouter } from './routes/truto-webhooks.js';
import { unifiedConnectionRouter } from './routes/unified-connections.js';
import { unifiedWebhookRouter } from './routes/unified-webhooks.js';
import { createAddressPolicy, Sender } from '@hookpost/delivery';
import type { ApiContext, ApiDeps } from './services/deps.js';
import { EventIngestor } from './services/ingest.js';

export type { ApiDeps } from './services/deps.js';

export interface Api {
  app: Express;
  /** What the HTTP server runs: the app, with the fast path of event ingest in front (http/fast-ingest.ts). */
  handler: FastIngestHandler;
  /** Releases what the app holds (HTTP client pools); the caller owns the database. */
  close(): Promise<void>;
}

/** Paths served without an API key. */
const PUBLIC_PATHS = /^\/(healthz|readyz|openapi\.json|docs(\/.*)?|v1\/admin\/.*)$/;

/** The Express app: every route of the contract, one error envelope, no listening. */
export function createApi(deps: ApiDeps): Api {
  const addressPolicy = createAddressPolicy(deps.config.ssrfAllowlist);
  const ctx: ApiContext = {
    ...deps,
    addressPolicy,
    apiKeyCache: new ApiKeyCache(deps.config.api.keyCacheMs),
    ingestor: new EventIngestor(deps.db, deps.logger, {
      windowMs: deps.config.ingest.groupCommitMs,
      maxEvents: deps.config.ingest.groupCommitMax,
      maxInFlight: deps.config.ingest.commitsInFlight,
    }),
    sender: new Sender({
      policy: addressPolicy,
      timeoutMs: deps.config.delivery.timeoutMs,
      connectTimeoutMs: deps.config.delivery.connectTimeoutMs,
      connectionsPerOrigin: 4,
    }),
  };
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('query parser', 'extended');

  // Request ids always; per-request access logs only at debug/trace, where they are read
  // (pino-http costs ~7 % of API CPU even when its lines are filtered out).
  const genReqId = (req: IncomingMessage, res: ServerResponse) => {
    const given = req.headers['x-request-id'];
    const id = typeof given === 'string' && /^[\w.-]{1,128}$/.test(given) ? given : randomUUID();
    res.setHeader('x-request-id', id);
    return id;
  };
  if (deps.logger.isLevelEnabled('debug')) {
    app.use(
      pinoHttp({
        logger: deps.logger,
        genReqId,
        customLogLevel: (_req, res, err) => (err || res.statusCode >= 500 ? 'error' : res.statusCode >= 400 ? 'info' : 'debug'),
        serializers: { req: (req: { method: string; url: string; id: unknown }) => ({ id: req.id, method: req.method, url: req.url }) },
      }),
    );
  } else {
    app.use((req, res, next) => {
      req.id = genReqId(req, res);
      next();
    });
  }
  // The key before the body: an unauthenticated request gets its 401 without having the API
  // read and parse its body (up to 16 MB on the batch route; before, it was parsed first).
  const apiKeyAuth = requireApiKey(deps.db, deps.logger, ctx.apiKeyCache);
  app.use((req, res, next) => (PUBLIC_PATHS.test(req.path) ? next() : apiKeyAuth(req, res, next)));
  const jsonTypes = ['application/json', 'application/*+json'];
  // Before the parsers (it needs only the headers): a body of another type (curl -d sends
  // form encoding unless told) is left unread by them and would reach the route as no body,
  // a 400 about a missing field, which misleads; and one labelled UTF-16 but not so was
  // decoded as UTF-16 first, a 400 malformed_json instead of this 415. Say what is wrong.
  app.use((req, _res, next) => {
    const hasBody = req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
    if (hasBody && !req.is(jsonTypes)) {
      next(new ApiError('unsupported_media_type', 'the request body must be JSON (Content-Type: application/json)', 'header.content-type'));
      return;
    }
    // JSON between systems is UTF-8 (RFC 8259 §8.1). The parser would also read UTF-16 and
    // UTF-32, where the checks for what Postgres cannot store (which look at the raw bytes)
    // would not see an escaped NUL: a 500 from the database instead of a 400.
    const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(req.headers['content-type'] ?? '')?.[1]?.toLowerCase();
    if (hasBody && charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') {
      next(new ApiError('unsupported_media_type', `the request body must be UTF-8 JSON, not ${charset}`, 'header.content-type'));
      return;
    }
    next();
  });
  // Batch ingest carries up to 1000 events: its own, larger cap. Other routes: BODY_LIMIT_BYTES.
  app.use('/v1/events/batch', express.json({ limit: deps.config.ingest.batchBodyLimitBytes, strict: false, type: jsonTypes, verify: rememberRawBody }));
  app.use(express.json({ limit: deps.config.api.bodyLimitBytes, strict: false, type: jsonTypes, verify: rememberRawBody }));
  app.use(refuseUnstorableBodies());

  const openApi = buildOpenApiDocument('0.1.0');
  app.get('/openapi.json', (_req, res) => {
    res.json(openApi);
  });
  if (deps.config.api.docsEnabled) app.use('/docs', swaggerUi.serve, swaggerUi.setup(openApi, { customSiteTitle: 'Hookpost API' }));

  createExpressEndpoints(
    contract,
    {
      unified: { webhook: unifiedWebhookRouter(ctx), connection: unifiedConnectionRouter(ctx) },
      truto: { webhook: trutoWebhookRouter(ctx) },
      hookpost: hookpostRouter(ctx),
      system: systemRouter(ctx),
    },
    app,
    {
      logInitialization: false,
      jsonQuery: false,
      responseValidation: deps.config.env !== 'production',
      requestValidationErrorHandler: (err, _req, _res, next) => next(err),
    },
  );

  app.use(notFoundHandler(contract));
  app.use(errorHandler(deps.logger));
  const handler = withFastIngest(app, {
    ingestor: ctx.ingestor,
    apiKeyCache: ctx.apiKeyCache,
    logger: deps.logger,
    bodyLimitBytes: deps.config.api.bodyLimitBytes,
    batchBodyLimitBytes: deps.config.ingest.batchBodyLimitBytes,
    requestId: genReqId,
  });
  return { app, handler, close: () => ctx.sender.close() };
}
