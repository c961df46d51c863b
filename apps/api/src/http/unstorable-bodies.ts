/**
 * JSON bodies Hookpost cannot store, refused with a 400 naming the field instead of failing
 * in the database (or in the serialiser) with a 500:
 *
 * - a string (value or key) with a NUL character (U+0000): Postgres `text` and `jsonb`
 *   refuse it. JSON carries one only as the escape `\u0000`, so strings are searched only
 *   when the raw bytes contain that escape;
 * - a string (value or key) with an unpaired UTF-16 surrogate (`\ud800`–`\udfff` not in a
 *   pair): JSON.parse accepts one, Postgres's JSON parser does not. It too can only come as
 *   an escape, so strings are searched only when the raw bytes contain `\ud` or `\uD`;
 * - nesting deeper than MAX_JSON_DEPTH: V8's JSON.stringify gives up a few thousand
 *   levels down (the ingest serialises every batch) and Postgres's jsonb parser a little
 *   further. Real payloads nest a few dozen levels at most.
 *
 * Every parsed body is walked once (iteratively: a body may nest far deeper than the call
 * stack goes): about a microsecond per event on the ingest path.
 */
import type { IncomingMessage } from 'node:http';
import type { RequestHandler } from 'express';
import { ApiError } from './errors.js';

/** Deepest nesting accepted in a JSON body (the body itself is level 0). */
export const MAX_JSON_DEPTH = 100;

const NUL_ESCAPE = Buffer.from('\\u0000');
const SURROGATE_ESCAPES = [Buffer.from('\\ud'), Buffer.from('\\uD')];
/** A high surrogate not followed by a low one, or a low one not preceded by a high one. */
const UNPAIRED_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Why a string cannot be stored, if it cannot. */
function badString(s: string, checkNul: boolean, checkSurrogates: boolean): string | undefined {
  if (checkNul && s.includes('\u0000')) return 'a NUL character (\\u0000), which cannot be stored';
  if (checkSurrogates && UNPAIRED_SURROGATE.test(s)) return 'an unpaired surrogate (\\ud800–\\udfff), which is not valid Unicode';
  return undefined;
}

/** What is wrong with a parsed body, if anything: the field and why. */
export function bodyProblem(raw: Buffer, body: unknown): { field: string; message: string } | undefined {
  // Either escape may also be an escaped backslash followed by `u…`: then nothing is found.
  const checkNul = raw.indexOf(NUL_ESCAPE) !== -1;
  const checkSurrogates = SURROGATE_ESCAPES.some((e) => raw.indexOf(e) !== -1);
  const checkStrings = checkNul || checkSurrogates;
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
      const why = badString(v, checkNul, checkSurrogates);
      if (why) return { field: pathOf(node), message: `contains ${why}` };
      continue;
    }
    if (depth >= MAX_JSON_DEPTH) return { field: pathOf(node), message: `nests deeper than ${MAX_JSON_DEPTH} levels` };
    const isArray = Array.isArray(v);
    const object = v as Record<string, unknown>;
    for (const k in object) {
      if (!Object.hasOwn(object, k)) continue;
      const why = checkStrings && !isArray ? badString(k, checkNul, checkSurrogates) : undefined;
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

/** After express.json: a body Hookpost cannot store is refused before any route sees it. */
export function refuseUnstorableBodies(): RequestHandler {
  return (req, _res, next) => {
    const raw = rawBodies.get(req);
    next(raw ? bodyError(raw, req.body) : undefined);
  };
}
