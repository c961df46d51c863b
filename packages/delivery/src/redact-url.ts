/** Query parameters of a database URL that carry credentials (`password`, `sslpassword`, `access_token`, `api_key`…). */
const SECRET_PARAM = /pass|pwd|secret|token|key|auth|credential/i;

/**
 * `postgres://user:***@host/db?password=***`: what responses, logs and unified bodies show of
 * a database URL. The password and every query parameter that may carry a credential are
 * masked. The user information ends at the last `@` before the query: a URL parser ends it at
 * the first `/`, so a password with an unencoded `/` in it (`app:1234/xyZ@db…`) read as a
 * host, a port and a path, and came back whole; an `@` in the query (`?user=admin@server`, as
 * Azure names users) is not one. A URL that still reads as a host and port with an `@` after
 * it (a password with an unencoded `?`) is masked whole. Masking too much is the safe side.
 * Idempotent: a masked URL comes back as it is.
 */
export function redactUrl(url: string): string {
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(url)?.[0];
  if (!scheme) return '***';
  const query = url.indexOf('?', scheme.length);
  const at = url.lastIndexOf('@', query < 0 ? url.length : query);
  let head = scheme;
  let rest = url.slice(scheme.length);
  if (at >= scheme.length) {
    const userinfo = url.slice(scheme.length, at);
    const colon = userinfo.indexOf(':');
    head += colon < 0 ? `${userinfo}@` : `${userinfo.slice(0, colon)}:***@`;
    rest = url.slice(at + 1);
  } else {
    const authority = /^[^/?#]*/.exec(rest)?.[0] ?? '';
    if (authority.includes(':') && rest.includes('@', authority.length)) return `${scheme}***`;
  }
  try {
    const u = new URL(scheme + rest);
    for (const name of new Set(u.searchParams.keys())) if (SECRET_PARAM.test(name)) u.searchParams.set(name, '***');
    return head + u.toString().slice(scheme.length);
  } catch {
    return `${scheme}***`;
  }
}
