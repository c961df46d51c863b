/**
 * Source answers are third-party data, and what Hookpost delivers is stored in Postgres.
 * One unstorable record used to fail the write of its page on every run, leaving the
 * stream stuck. So:
 *
 * - NUL characters and unpaired surrogates, which Postgres refuses (@hookpost/runtime
 *   storable-text.ts), become U+FFFD, in values and in keys, as Postgres text input
 *   already does with invalid UTF-8;
 * - objects and arrays nested MAX_JSON_DEPTH levels deep (the answer itself is level 0)
 *   become a string saying they were not kept (@hookpost/runtime json-depth.ts): deeper
 *   than Postgres's jsonb parser, V8's JSON.stringify or the fingerprint's walk go.
 *
 * The rest of the record arrives as it was, numbers too: one a double would change is kept
 * as the source wrote it (@hookpost/contract exact-json.ts). An answer whose raw bytes have
 * neither escape, nor such nesting, nor such a number is parsed once and not touched.
 */
import { mayHoldInexactNumbers, parseExact } from '@hookpost/contract';
import { cutDeeperThan, nestsDeeperThan, storableString, unstorableEscapesIn, whyUnstorable } from '@hookpost/runtime';

/** An answer parsed as JSON.parse reads it, and with its numbers as sent. */
export interface ParsedAnswer {
  /** As JSON.parse reads it: what the protocol's own fields are checked on. */
  plain: unknown;
  /**
   * The same, except that numbers a double would change (a 64-bit id) are parseExact's
   * placeholders, stored and sent as the source wrote them (write it with stringifyExact).
   * The same object as `plain` when the answer holds none.
   */
  exact: unknown;
}

/** Parses a JSON answer, replacing what Postgres cannot store. */
export function parseStorableJson(raw: Buffer): ParsedAnswer {
  const text = raw.toString('utf8');
  // The raw bytes are looked at once, for both readings.
  const deep = nestsDeeperThan(raw);
  const escapes = unstorableEscapesIn(raw);
  const storable = (parsed: unknown): unknown => {
    const value = deep ? cutDeeperThan(parsed) : parsed;
    return escapes.nul || escapes.surrogates ? withStorableStrings(value, escapes) : value;
  };
  const plain = storable(JSON.parse(text));
  return { plain, exact: mayHoldInexactNumbers(text) ? storable(parseExact(text)) : plain };
}

/**
 * The value with its strings (values and keys) made storable, in place. Iterative, not a
 * JSON.parse reviver: V8 revives recursively, and overflows its stack on an answer that
 * nests a few thousand levels deep.
 */
function withStorableStrings(value: unknown, escapes: { nul: boolean; surrogates: boolean }): unknown {
  if (typeof value === 'string') return storableString(value);
  if (value === null || typeof value !== 'object') return value;
  const stack: Record<string, unknown>[] = [value as Record<string, unknown>];
  for (let node = stack.pop(); node; node = stack.pop()) {
    const keys = Object.keys(node);
    for (const key of keys) {
      const child = node[key];
      if (typeof child === 'string') node[key] = storableString(child);
      else if (child !== null && typeof child === 'object') stack.push(child as Record<string, unknown>);
    }
    if (!Array.isArray(node) && keys.some((k) => whyUnstorable(k, escapes))) renameKeys(node, keys);
  }
  return value;
}

/** Gives every key its storable spelling, keeping the keys' order. */
function renameKeys(node: Record<string, unknown>, keys: string[]): void {
  const entries = keys.map((k) => [storableString(k), node[k]] as const);
  for (const k of keys) delete node[k];
  // defineProperty: a key spelled `__proto__` stays a key, as JSON.parse made it.
  for (const [k, v] of entries) Object.defineProperty(node, k, { value: v, writable: true, enumerable: true, configurable: true });
}
