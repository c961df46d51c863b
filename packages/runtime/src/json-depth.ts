/**
 * How deep JSON may nest and still be stored and sent. V8's JSON.stringify gives up a few
 * thousand levels down, Postgres's jsonb parser a little further, and every recursive
 * walk in between (fingerprints, projections) would overflow its stack. Real payloads nest
 * a few dozen levels at most. The API refuses deeper bodies with a 400 naming the field
 * (apps/api `unstorable-bodies.ts`); the poller cuts deeper parts out of third-party
 * answers (packages/sources `storable-json.ts`), so one odd record cannot fail its page's
 * write on every run.
 */

/**
 * Nesting limit of a JSON document: the document itself is level 0, and an object or
 * array at level MAX_JSON_DEPTH or below it is too deep.
 */
export const MAX_JSON_DEPTH = 100;

const OPEN_OBJECT = 0x7b;
const OPEN_ARRAY = 0x5b;
const CLOSE_OBJECT = 0x7d;
const CLOSE_ARRAY = 0x5d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * Whether raw JSON text has an object or array at level `max` or below (more than `max`
 * brackets open at once). A byte scan that skips strings, without parsing: a few
 * microseconds per kilobyte.
 */
export function nestsDeeperThan(raw: Buffer, max: number = MAX_JSON_DEPTH): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < raw.length; i++) {
    const b = raw[i];
    if (inString) {
      if (b === BACKSLASH) i++;
      else if (b === QUOTE) inString = false;
    } else if (b === QUOTE) {
      inString = true;
    } else if (b === OPEN_OBJECT || b === OPEN_ARRAY) {
      if (++depth > max) return true;
    } else if (b === CLOSE_OBJECT || b === CLOSE_ARRAY) {
      depth--;
    }
  }
  return false;
}

/** What replaces an object or array nested too deep. */
export function tooDeepMarker(max: number = MAX_JSON_DEPTH): string {
  return `[nested deeper than ${max} levels: not kept]`;
}

/**
 * `value` with every object or array at level `max` replaced by `tooDeepMarker(max)`
 * (in place: `value` is a freshly parsed document). Iterative, as the value may nest far
 * deeper than the call stack goes.
 */
export function cutDeeperThan<T>(value: T, max: number = MAX_JSON_DEPTH): T {
  const marker = tooDeepMarker(max);
  const stack: { node: Record<string, unknown>; depth: number }[] = [];
  if (value !== null && typeof value === 'object') stack.push({ node: value as Record<string, unknown>, depth: 0 });
  for (let item = stack.pop(); item; item = stack.pop()) {
    const { node, depth } = item;
    for (const key of Object.keys(node)) {
      const child = node[key];
      if (child === null || typeof child !== 'object') continue;
      if (depth + 1 >= max) {
        node[key] = marker;
      } else {
        stack.push({ node: child as Record<string, unknown>, depth: depth + 1 });
      }
    }
  }
  return value;
}
