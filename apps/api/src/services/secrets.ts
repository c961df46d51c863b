import type { SecretBox } from '@hookpost/db';

/** Query parameters of a database URL that carry credentials (`password`, `sslpassword`, `access_token`, `api_key`…). */
const SECRET_PARAM = /pass|pwd|secret|token|key|auth|credential/i;

/**
 * `postgres://user:***@host/db?password=***`: what responses and logs show of a database
 * URL. The password and every query parameter that may carry a credential are masked.
 */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    for (const name of new Set(u.searchParams.keys())) if (SECRET_PARAM.test(name)) u.searchParams.set(name, '***');
    return u.toString();
  } catch {
    return '***';
  }
}

/** Encrypted form and display form of a db_url, or nulls to clear it. */
export function sealDbUrl(box: SecretBox, url: string | null | undefined): { db_url_encrypted: Buffer | null; db_url_redacted: string | null } {
  if (!url) return { db_url_encrypted: null, db_url_redacted: null };
  return { db_url_encrypted: box.seal(url), db_url_redacted: redactUrl(url) };
}
