/**
 * JSON bodies Hookpost cannot store, refused with a 400 naming the field instead of failing
 * in the database (or in the serialiser) with a 500:
 *
 * - bytes that are not UTF-8 (decoding would store U+FFFD in their place);
 * - a string (value or key) with a NUL character or an unpaired surrogate, which Postgres
 *   refuses (@hookpost/runtime storable-text.ts); strings are looked at only when the raw
 *   bytes contain the escapes they need;
 * - nesting as deep as MAX_JSON_DEPTH (@hookpost/runtime json-depth.ts): the ingest
 *   serialises every batch, and V8's JSON.stringify gives up a few thousand levels down.
 *
 * Every parsed body is walked once (iteratively: a body may nest far deeper than the call
 * stack goes): about a microsecond per event on the ingest path.
 */
import { isUtf8 } from 'node:buffer';
import type { IncomingMessage } from 'node:http';
import type { RequestHandler } from 'express';
import { MAX_JSON_DEPTH, unstorableEscapesIn, whyUnstorable } from '@hookpost/runtime';
import { ApiError } from './errors.js';

/** What is wrong with a parsed body, if anything: the field and why. */
export function bodyProblem(raw: Buffer, body: unknown): { field: string; message: string } | undefined {
  // Decoding replaces bytes that are not UTF-8 with U+FFFD: the event was stored changed,
  // answered 202 (bytes FF FE C3 in a string arrived as three U+FFFD).
  if (!isUtf8(raw)) return { field: 'body', message: 'is not valid UTF-8' };
  const look = unstorableEscapesIn(raw);
  const checkStrings = look.nul || look.surrogates;
  // This runs on every ingest request: no allocation per value but one slot in each of
  // these arrays per object (and per string, when strings are looked at). Paths are built only
  // for the field reported, from each node's parent and key.
  const parents: number[] = [];
  const keys: (string | number)[] = [];
  const pathOf = (node: number) => {
    const parts: (string | number)[] = [];
    for (let n = node; n !== -1; n = parents[n] as number) parts.push(keys[n] as string | number);
    return ['body', ...parts.reverse()].join('.');
  };
  const values: unknown[] = [body];
  const nodes: number[] = [-1];
  const depths: number[] = [0];
  while (values.length > 0) {
    const v = values.pop();
    const node = nodes.pop() as number;
    const depth = depths.pop() as number;
    if (typeof v === 'string') {
      const why = whyUnstorable(v, look);
      if (why) return { field: pathOf(node), message: `contains ${why}` };
      continue;
    }
    if (depth >= MAX_JSON_DEPTH) return { field: pathOf(node), message: `nests deeper than ${MAX_JSON_DEPTH} levels` };
    const isArray = Array.isArray(v);
    const object = v as Record<string, unknown>;
    for (const k in object) {
      if (!Object.hasOwn(object, k)) continue;
      const why = isArray ? undefined : whyUnstorable(k, look);
      if (why) return { field: pathOf(node), message: `has a key with ${why}` };
      const child = object[k];
      if (child === null || (typeof child === 'string' ? !checkStrings : typeof child !== 'object')) continue;
      parents.push(node);
      keys.push(isArray ? Number(k) : k);
      values.push(child);
      nodes.push(keys.length - 1);
      depths.push(depth + 1);
    }
  }
  return undefined;
}

/** The 400 for a body Hookpost cannot store, or undefined when it is fine. */
export function bodyError(raw: Buffer, body: unknown): ApiError | undefined {
  const p = bodyProblem(raw, body);
  return p ? new ApiError('validation_failed', `${p.field}: ${p.message}`, p.field, [p]) : undefined;
}

/** Raw JSON bodies by request: express.json's `verify` sees the bytes, the routes only the parsed body. */
const rawBodies = new WeakMap<IncomingMessage, Buffer>();

/** For express.json's `verify`. */
export function rememberRawBody(req: IncomingMessage, _res: unknown, raw: Buffer): void {
  rawBodies.set(req, raw);
}

/** The size of the raw body express.json read for `req` (0 when it read none). */
export function rawBodyBytes(req: IncomingMessage): number {
  return rawBodies.get(req)?.length ?? 0;
}

/** The raw body express.json read for `req`, as text; undefined when it read none. */
export function rawBodyText(req: IncomingMessage): string | undefined {
  return rawBodies.get(req)?.toString('utf8');
}

const LOOK_FOR_ALL = { nul: true, surrogates: true };

/**
 * The 400 for a query string with a value Postgres cannot take (`?object=%00` reached a
 * query's parameters: a 500), naming it (`query.object`); undefined when it is fine.
 */
export function queryError(query: unknown): ApiError | undefined {
  const stack: { value: unknown; path: string }[] = [{ value: query, path: 'query' }];
  for (let item = stack.pop(); item; item = stack.pop()) {
    const { value, path } = item;
    if (typeof value === 'string') {
      const why = whyUnstorable(value, LOOK_FOR_ALL);
      if (why) return new ApiError('validation_failed', `${path}: contains ${why}`, path, [{ field: path, message: `contains ${why}` }]);
    } else if (value !== null && typeof value === 'object') {
      for (const [k, v] of Object.entries(value)) {
        const why = whyUnstorable(k, LOOK_FOR_ALL);
        if (why) return new ApiError('validation_failed', `${path}: has a parameter name with ${why}`, path, [{ field: path, message: `has a parameter name with ${why}` }]);
        stack.push({ value: v, path: `${path}.${k}` });
      }
    }
  }
  return undefined;
}

/** After express.json: a body (or query string) Hookpost cannot store is refused before any route sees it. */
export function refuseUnstorableBodies(): RequestHandler {
  return (req, _res, next) => {
    const raw = rawBodies.get(req);
    next((raw ? bodyError(raw, req.body) : undefined) ?? (req.url.includes('?') ? queryError(req.query) : undefined));
  };
}
