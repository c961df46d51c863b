import type { Scope } from '@hookpost/db';

/** Who is calling: set by the auth middleware on every authenticated request. */
export interface AuthContext {
  apiKeyId: string;
  workspaceId: string;
  /** The environment the key is limited to; null for a workspace-wide key. */
  environmentId: string | null;
}

// Keyed by the request object itself: no global type augmentation, nothing outlives the request.
const contexts = new WeakMap<object, AuthContext>();

export function setAuth(req: object, auth: AuthContext): void {
  contexts.set(req, auth);
}

/** What a caller may reach: its workspace, and its key's environment if limited to one. */
export function scopeOf(auth: AuthContext): Scope {
  return { workspaceId: auth.workspaceId, environmentId: auth.environmentId };
}

/** The caller's scope; every route behind the auth middleware has one. */
export function requireScope(req: object): Scope {
  const auth = contexts.get(req);
  if (!auth) throw new Error('route is not behind the API key middleware');
  return scopeOf(auth);
}
