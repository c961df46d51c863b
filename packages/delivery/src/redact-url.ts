/** Query parameters of a database URL that carry credentials (`password`, `sslpassword`, `access_token`, `api_key`…). */
const SECRET_PARAM = /pass|pwd|secret|token|key|auth|credential/i;

/** What a host (and port) may be made of: a name, an address, `[IPv6]`, `:port`. Anything else is not shown. */
const HOST = /^[A-Za-z0-9._~%[\]:-]*$/;

/**
 * `postgres://user:***@host/db?password=***`: what responses, logs and unified bodies show of
 * a database URL. The password and every query parameter that may carry a credential are
 * masked; a URL whose parts cannot be told apart for certain is masked whole
 * (`postgres://***`). Masking too much is the safe side. Idempotent: a masked URL comes back
 * as it is (so a mask stored by an older version is masked again when shown).
 *
 * Unencoded characters make a URL parser read a password as something else: a `/` in it ends
 * the authority (`app:1234/xyZ@db…` read as host, port and path, and came back whole), a `?`
 * starts the query. So the user information is what comes before the last `@` ahead of the
 * query; an `@` after that as well, a host that is no host name, or an `@` in the query that
 * is not inside a `key=value` pair (or with a colon before the query: `u:123?w@db…`) mask the
 * whole URL. An `@` in a query value (`?user=admin@server`, as Azure names users) is kept.
 */
export function redactUrl(url: string): string {
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(url)?.[0];
  if (!scheme) return '***';
  const whole = `${scheme}***`;
  const afterScheme = url.slice(scheme.length);
  const q = afterScheme.indexOf('?');
  const beforeQuery = q < 0 ? afterScheme : afterScheme.slice(0, q);
  const at = beforeQuery.lastIndexOf('@');
  let head = scheme;
  let rest = afterScheme;
  if (at >= 0) {
    const userinfo = beforeQuery.slice(0, at);
    rest = afterScheme.slice(at + 1);
    if (rest.includes('@')) return whole;
    const colon = userinfo.indexOf(':');
    head += colon < 0 ? `${userinfo}@` : `${userinfo.slice(0, colon)}:***@`;
  } else if (q >= 0 && afterScheme.includes('@', q)) {
    if (beforeQuery.includes(':')) return whole;
    for (const pair of afterScheme.slice(q + 1).split('&')) {
      const a = pair.indexOf('@');
      if (a >= 0 && !pair.slice(0, a).includes('=')) return whole;
    }
  }
  if (!HOST.test(/^[^/?#]*/.exec(rest)?.[0] ?? '')) return whole;
  const restQuery = rest.indexOf('?');
  const path = restQuery < 0 ? rest : rest.slice(0, restQuery);
  try {
    // The query is masked as text, not through URL: URL reads an unencoded `#` in a value as
    // the fragment's start and an `&` as the next pair's, so the rest of a password was shown
    // (`?password=S3cr#t-tail` as `?password=***#t-tail`).
    const shown = new URL(scheme + path).toString().slice(scheme.length);
    return head + shown + (restQuery < 0 ? '' : `?${maskQuery(rest.slice(restQuery + 1))}`);
  } catch {
    return whole;
  }
}

/**
 * A query with every credential-like parameter's value masked. Pairs are split at every `&`
 * (a name may hold any character: `auth[token]=`, `api:key=`); a credential's value also takes
 * the segments after it that are no `name=` pair, so a value with an unencoded `&` or `#`
 * (`password=ab&cd#ef&sslmode=require`) is masked whole. A name that does not decode is taken
 * for a credential's.
 */
function maskQuery(query: string): string {
  const out: string[] = [];
  let masking = false;
  for (const segment of query.split('&')) {
    const eq = segment.indexOf('=');
    if (masking && eq <= 0) continue; // the credential's value went on past an unencoded '&'
    const name = eq < 0 ? segment : segment.slice(0, eq);
    masking = isCredentialName(name);
    out.push(masking ? `${name}=***` : segment);
  }
  return out.join('&');
}

function isCredentialName(name: string): boolean {
  try {
    return SECRET_PARAM.test(decodeURIComponent(name.replace(/\+/g, ' ')));
  } catch {
    return true;
  }
}
