import type { SecretBox } from '@hookpost/db';

/** `postgres://user:***@host/db`: what responses and logs show of a database URL. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
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
