/**
 * JSON numbers kept as they were sent. JSON.parse makes every number a double, so an integer
 * beyond 2^53 (a 64-bit id, say) or a decimal with more than 15 significant digits comes out
 * changed: 12345678901234567890 is read as 12345678901234567000. Event data is stored in jsonb,
 * which keeps any number exactly, and sent on from there: these two functions carry such
 * numbers through the JavaScript in between unchanged.
 *
 * parseExact parses as JSON.parse does, except that each number a double would not hold
 * exactly becomes a placeholder string: the number's text behind a mark drawn at random by
 * this process. stringifyExact writes placeholders back as the numbers' text. Code between
 * the two sees a string where the number was; the mark never leaves the process (a
 * placeholder written with plain JSON.stringify would, so write parsed data with these).
 */
import { randomBytes } from 'node:crypto';

const MARK = `~hp-exact-${randomBytes(8).toString('hex')}~`;
/** A placeholder as JSON.stringify writes it (the mark needs no escaping), capturing the number. */
const PLACEHOLDER = new RegExp(`"${MARK}(-?[0-9][0-9.eE+-]*)"`, 'g');

/**
 * Where a number a double changes may be: 16 digits in a row (a dot between them allowed), or
 * an exponent of three digits (past a double's range). Each such place is widened to the whole
 * token around it and checked (numberAt).
 */
const CANDIDATES = /\d[\d.]{15}|\d[eE][+-]?\d{3}/g;
/** Whether the character code `c` can be part of a number token: 0-9 . e E + -. */
function numberChar(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || c === 0x2e || c === 0x65 || c === 0x45 || c === 0x2b || c === 0x2d;
}
/** What may stand just before and just after a value outside strings. */
const BEFORE_VALUE = /[[:,\s]/;
const AFTER_VALUE = /[\]},\s]/;

/**
 * A decimal number's value as text that is the same for any way of writing it: its significant
 * digits and where the point goes (0.DIGITS × 10^point); "0" for zero, whatever its sign.
 */
function canonical(number: string): string {
  const [mantissa = '', exponent = '0'] = number.toLowerCase().split('e');
  const sign = mantissa.startsWith('-') ? '-' : '';
  const [whole = '', fraction = ''] = mantissa.replace(/^-/, '').split('.');
  const all = whole + fraction;
  const digits = all.replace(/^0+/, '');
  if (digits === '') return '0';
  return `${sign}${digits.replace(/0+$/, '')}@${whole.length - (all.length - digits.length) + Number(exponent)}`;
}

/**
 * Past these, a number is left to JSON.parse as before (`1e400` is read as Infinity, written as
 * null): jsonb writes a number out in full, so `1e131071` (8 bytes) is 131 KB of text at every
 * read (9,000 of them made the claim's read of the event fail, out of memory), and numbers
 * past numeric's range are refused (a 500 for the whole group commit).
 */
const MAX_KEPT_DIGITS = 1000;
const MAX_KEPT_POINT = 400;

/**
 * Whether this number token is kept as sent: JSON.parse would read it as a different value (as
 * JSON.stringify then writes it), and it is within a double's range, with at most
 * MAX_KEPT_DIGITS significant digits and its point within MAX_KEPT_POINT places of the units.
 */
function keptExact(token: string): boolean {
  const n = Number(token);
  if (!Number.isFinite(n)) return false;
  const written = String(n);
  if (written === token) return false;
  const exact = canonical(token);
  if (exact === canonical(written)) return false;
  const at = exact.indexOf('@');
  if (at < 0) return false; // zero
  return at - (exact.startsWith('-') ? 1 : 0) <= MAX_KEPT_DIGITS && Math.abs(Number(exact.slice(at + 1))) <= MAX_KEPT_POINT;
}

/**
 * The run of number characters around `at` (`end`), and whether it is a number to keep
 * (`keep`): one that stands where a value can (between separators) and keptExact. A run in a
 * word (hex such as `"7e7148d3…"` or `…-4e123…` in a UUID, a hash with 16 digits in a row) is
 * in a string and is left at once; one between separators may still be in a string (parseExact
 * looks at the quotes). Callers skip candidates before `end`: a run is widened once, not once
 * per candidate in it (a string of a million digits would otherwise take minutes).
 */
function numberAt(text: string, at: number): { start: number; end: number; keep: boolean } {
  let start = at;
  let end = at + 1;
  while (start > 0 && numberChar(text.charCodeAt(start - 1))) start--;
  while (end < text.length && numberChar(text.charCodeAt(end))) end++;
  const between = (start === 0 || BEFORE_VALUE.test(text.charAt(start - 1))) && (end === text.length || AFTER_VALUE.test(text.charAt(end)));
  return { start, end, keep: between && keptExact(text.slice(start, end)) };
}

/** Whether `text` may hold a number that JSON.parse would change (a quick look, no parse). */
export function mayHoldInexactNumbers(text: string): boolean {
  // A microsecond timestamp (16 digits, below 2^53) is a candidate, and exact: most text ends here.
  let widened = 0;
  for (const m of text.matchAll(CANDIDATES)) {
    if (m.index < widened) continue;
    const number = numberAt(text, m.index);
    if (number.keep) return true;
    widened = number.end;
  }
  return false;
}

/** Whether the `"` at `at` is escaped (an odd number of backslashes before it). */
function escapedQuote(text: string, at: number): boolean {
  let n = 0;
  while (at - n - 1 >= 0 && text.charCodeAt(at - n - 1) === 0x5c) n++;
  return n % 2 === 1;
}

/**
 * JSON.parse, except that numbers a double would change are read as placeholders (see the
 * module) for stringifyExact to write back as sent. Throws where JSON.parse throws.
 */
export function parseExact(text: string): unknown {
  const parsed: unknown = JSON.parse(text);
  if (!mayHoldInexactNumbers(text)) return parsed;
  // The text is valid JSON (it parsed), so its numbers are all values, and each one replaced
  // by a string leaves it valid, with the same shape. Only the candidates are looked at;
  // whether one is in a string is told by the unescaped quotes before it.
  let out = '';
  let copied = 0;
  let inString = false;
  let scanned = 0;
  let widened = 0;
  for (const m of text.matchAll(CANDIDATES)) {
    if (m.index < widened) continue;
    const number = numberAt(text, m.index);
    widened = number.end;
    if (!number.keep) continue;
    for (let q = text.indexOf('"', scanned); q !== -1 && q < number.start; q = text.indexOf('"', q + 1)) {
      if (!escapedQuote(text, q)) inString = !inString;
      scanned = q + 1;
    }
    if (inString) continue;
    const { start, end } = number;
    out += `${text.slice(copied, start)}"${MARK}${text.slice(start, end)}"`;
    copied = end;
  }
  return copied === 0 ? parsed : (JSON.parse(out + text.slice(copied)) as unknown);
}

/** JSON.stringify, with parseExact's placeholders written back as the numbers they hold. */
export function stringifyExact(value: unknown): string {
  return withExactNumbers(JSON.stringify(value));
}

/** JSON text written by JSON.stringify (or built from its pieces) with the placeholders in it written back as their numbers. */
export function withExactNumbers(json: string): string {
  return json.includes(MARK) ? json.replace(PLACEHOLDER, '$1') : json;
}

/** String(value), except that a placeholder gives its number as sent (to compare a field with a filter's text, say). */
export function exactString(value: unknown): string {
  return typeof value === 'string' && value.startsWith(MARK) ? value.slice(MARK.length) : String(value);
}

/**
 * JSON.stringify with each placeholder written as JSON.parse would have read its number:
 * what a JavaScript receiver computes from the value it parses out of stringifyExact's text
 * (the unified face's `sig`/`sig256` are over that).
 */
export function stringifyAsParsed(value: unknown): string {
  const text = JSON.stringify(value);
  return text.includes(MARK) ? text.replace(PLACEHOLDER, (_, number: string) => JSON.stringify(Number(number))) : text;
}
