import { timingSafeEqual } from 'node:crypto';
import { apiKeys, type Db } from '@hookpost/db';
import type { Logger } from '@hookpost/runtime';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { setAuth } from './context.js';
import { ApiError } from './errors.js';

/**
 * The key from `Authorization: Bearer <key>` or the bare `Authorization: <key>` that
 * the unified.to SDKs send.
 */
export function credentialFrom(req: Request): string | undefined {
  const raw = req.headers.authorization?.trim();
  if (!raw) return undefined;
  const match = /^bearer\s+(.+)$/i.exec(raw);
  const key = (match ? match[1] : raw)?.trim();
  return key || undefined;
}

/** Resolves the API key to a workspace (+ environment) or answers 401. */
export function requireApiKey(db: Db, logger: Logger): RequestHandler {
  return (req: Request, _res: Response, next: NextFunction) => {
    const key = credentialFrom(req);
    if (!key) return next(new ApiError('unauthorized', 'missing API key: send Authorization: Bearer <key>', 'header.authorization'));
    apiKeys
      .findApiKey(db, key)
      .then((row) => {
        if (!row) return next(new ApiError('unauthorized', 'invalid API key', 'header.authorization'));
        setAuth(req, { apiKeyId: row.id, workspaceId: row.workspace_id, environmentId: row.environment_id });
        apiKeys.touchApiKey(db, row.id).catch((err: unknown) => logger.warn({ err }, 'could not record API key use'));
        next();
      })
      .catch(next);
  };
}

/** Workspace administration: `Authorization: Bearer <HOOKPOST_ADMIN_TOKEN>`; disabled when unset. */
export function requireAdminToken(adminToken: string | undefined): RequestHandler {
  return (req, _res, next) => {
    if (!adminToken) return next(new ApiError('not_found', 'workspace administration is disabled (set HOOKPOST_ADMIN_TOKEN)'));
    const given = Buffer.from(credentialFrom(req) ?? '');
    const expected = Buffer.from(adminToken);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      return next(new ApiError('unauthorized', 'invalid admin token', 'header.authorization'));
    }
    next();
  };
}
