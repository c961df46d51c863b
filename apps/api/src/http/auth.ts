import { timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { apiKeys, type Db } from '@hookpost/db';
import type { Logger } from '@hookpost/runtime';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { setAuth, type AuthContext } from './context.js';
import { ApiError } from './errors.js';

/**
 * The key from `Authorization: Bearer <key>` or the bare `Authorization: <key>` that
 * the unified.to SDKs send.
 */
export function credentialFrom(req: { headers: IncomingHttpHeaders }): string | undefined {
  const raw = req.headers.authorization?.trim();
  if (!raw) return undefined;
  const match = /^bearer\s+(.+)$/i.exec(raw);
  const key = (match ? match[1] : raw)?.trim();
  return key || undefined;
}

/**
 * Recently verified keys, so authentication is not a query per request. Entries live
 * `ttlMs`; deleting a key through this process drops it at once, other API processes
 * stop accepting it within `ttlMs`. Unknown keys are never cached.
 */
export class ApiKeyCache {
  private readonly entries = new Map<string, { auth: AuthContext; expires: number }>();
  private readonly touched = new Map<string, number>();
  constructor(private readonly ttlMs: number) {}

  get(key: string): AuthContext | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    if (e.expires < Date.now()) {
      this.entries.delete(key);
      return undefined;
    }
    return e.auth;
  }

  set(key: string, auth: AuthContext): void {
    if (this.entries.size > 10_000) this.entries.clear();
    this.entries.set(key, { auth, expires: Date.now() + this.ttlMs });
  }

  forget(apiKeyId: string): void {
    for (const [k, e] of this.entries) if (e.auth.apiKeyId === apiKeyId) this.entries.delete(k);
  }

  /** True at most once a minute per key: when `last_used_at` is worth writing. */
  shouldTouch(apiKeyId: string): boolean {
    const now = Date.now();
    if ((this.touched.get(apiKeyId) ?? 0) > now - 60_000) return false;
    if (this.touched.size > 10_000) this.touched.clear();
    this.touched.set(apiKeyId, now);
    return true;
  }
}

/** Resolves the API key to a workspace (+ environment) or answers 401. */
export function requireApiKey(db: Db, logger: Logger, cache: ApiKeyCache): RequestHandler {
  return (req: Request, _res: Response, next: NextFunction) => {
    const key = credentialFrom(req);
    if (!key) return next(new ApiError('unauthorized', 'missing API key: send Authorization: Bearer <key>', 'header.authorization'));
    const cached = cache.get(key);
    if (cached) {
      setAuth(req, cached);
      return next();
    }
    apiKeys
      .findApiKey(db, key)
      .then((row) => {
        if (!row) return next(new ApiError('unauthorized', 'invalid API key', 'header.authorization'));
        const auth: AuthContext = { apiKeyId: row.id, workspaceId: row.workspace_id, environmentId: row.environment_id };
        cache.set(key, auth);
        setAuth(req, auth);
        if (cache.shouldTouch(row.id)) {
          apiKeys.touchApiKey(db, row.id).catch((err: unknown) => logger.warn({ err }, 'could not record API key use'));
        }
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
