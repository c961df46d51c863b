/**
 * What Postgres cannot store in `text` or `jsonb` and JSON can carry: the NUL character
 * (U+0000) and unpaired UTF-16 surrogates (`\ud800`–`\udfff` outside a pair). Both can
 * arrive in JSON only as escapes (`\u0000`, `\udXXX`; raw bytes cannot encode either), so
 * a body whose raw bytes contain neither escape holds neither, and only such a rare body
 * needs its strings looked at. The API refuses such strings (apps/api
 * `unstorable-bodies.ts`); the poller replaces them in third-party records
 * (packages/sources `storable-json.ts`).
 */
const NUL_ESCAPE = Buffer.from('\\u0000');
const SURROGATE_ESCAPES = [Buffer.from('\\ud'), Buffer.from('\\uD')];
/** A high surrogate not followed by a low one, or a low one not preceded by a high one. */
const UNPAIRED_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const UNPAIRED_SURROGATES = new RegExp(UNPAIRED_SURROGATE.source, 'g');

/** Which of the two the raw JSON may hold (an escape occurs; it may be an escaped backslash before `u…`). */
export function unstorableEscapesIn(raw: Buffer): { nul: boolean; surrogates: boolean } {
  return { nul: raw.indexOf(NUL_ESCAPE) !== -1, surrogates: SURROGATE_ESCAPES.some((e) => raw.indexOf(e) !== -1) };
}

/** Why a string cannot be stored (looking only for what `look` names), or undefined. */
export function whyUnstorable(s: string, look: { nul: boolean; surrogates: boolean }): string | undefined {
  if (look.nul && s.includes('\u0000')) return 'a NUL character (\\u0000), which cannot be stored';
  if (look.surrogates && UNPAIRED_SURROGATE.test(s)) return 'an unpaired surrogate (\\ud800–\\udfff), which is not valid Unicode';
  return undefined;
}

/** The string with U+FFFD (the replacement character) for each NUL and unpaired surrogate. */
export function storableString(s: string): string {
  return s.replaceAll('\u0000', '\ufffd').replace(UNPAIRED_SURROGATES, '\ufffd');
}
