import type { SecretBox } from '@hookpost/db';

/** Query parameters of a database URL that carry credentials (`password`, `sslpassword`, `access_token`, `api_key`…). */
const SECRET_PARAM = /pass|pwd|secret|token|key|auth|credential/i;

/**
 * `postgres://user:***@host/db?password=***`: what responses and logs show of a database
 * URL. The password and every query parameter that may carry a credential are masked.
 * The user information is cut at the last `@`, not where a URL parser ends the authority:
 * a password with an unencoded `/`, `?` or `#` in it (`app:1234/xyZ@db…`) reads to a parser
 * as a host, a port and a path, and came back whole. (Masking too much is the safe side.)
 */
export function redactUrl(url: string): string {
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(url)?.[0];
  if (!scheme) return '***';
  let head = scheme;
  let rest = url.slice(scheme.length);
  const at = url.lastIndexOf('@');
  if (at >= scheme.length) {
    const userinfo = url.slice(scheme.length, at);
    const colon = userinfo.indexOf(':');
    head += colon < 0 ? `${userinfo}@` : `${userinfo.slice(0, colon)}:***@`;
    rest = url.slice(at + 1);
  }
  try {
    const u = new URL(scheme + rest);
    for (const name of new Set(u.searchParams.keys())) if (SECRET_PARAM.test(name)) u.searchParams.set(name, '***');
    return head + u.toString().slice(scheme.length);
  } catch {
    return '***';
  }
}

/**
 * Encrypted form and display form of a db_url, or nulls to clear it; nothing (the stored one
 * kept) when it is the masked form this API shows of the stored one: a webhook read, changed
 * and sent back whole (what the unified.to SDK's update does) would otherwise store the mask.
 */
export function sealDbUrl(
  box: SecretBox,
  url: string | null | undefined,
  stored?: { db_url_redacted: string | null },
): { db_url_encrypted?: Buffer | null; db_url_redacted?: string | null } {
  if (url && stored?.db_url_redacted === url && url.includes('***')) return {};
  if (!url) return { db_url_encrypted: null, db_url_redacted: null };
  return { db_url_encrypted: box.seal(url), db_url_redacted: redactUrl(url) };
}
