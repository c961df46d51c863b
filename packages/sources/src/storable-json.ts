/**
 * Source answers are third-party data, and what Hookpost delivers is stored in Postgres,
 * which refuses NUL characters and unpaired surrogates (@hookpost/runtime storable-text.ts).
 * One such string in a record used to fail the write of its page on every run, leaving
 * the stream stuck. They become U+FFFD instead, in values and in keys, as Postgres text
 * input already does with invalid UTF-8; the rest of the record arrives as it was. An
 * answer whose raw bytes have neither escape is parsed once and not touched.
 */
import { storableString, unstorableEscapesIn, whyUnstorable } from '@hookpost/runtime';

/** Parses a JSON answer, replacing what Postgres cannot store. */
export function parseStorableJson(raw: Buffer): unknown {
  const text = raw.toString('utf8');
  const escapes = unstorableEscapesIn(raw);
  if (!escapes.nul && !escapes.surrogates) return JSON.parse(text);
  return JSON.parse(text, (_key, value: unknown) => {
    if (typeof value === 'string') return storableString(value);
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return value;
    const entries = Object.entries(value);
    if (!entries.some(([k]) => whyUnstorable(k, escapes))) return value;
    return Object.fromEntries(entries.map(([k, v]) => [storableString(k), v]));
  });
}
