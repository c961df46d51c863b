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

/** Whether JSON.parse would read this number token as a different value (as JSON.stringify then writes it). */
function inexact(token: string): boolean {
  const n = Number(token);
  if (!Number.isFinite(n)) return true;
  const written = String(n);
  return written !== token && canonical(token) !== canonical(written);
}

/**
 * The number token around `at`, when it stands where a value can (between separators) and
 * JSON.parse would change it; undefined otherwise. A run in a word (hex such as `"7e7148d3…"`
 * or `…-4e123…` in a UUID, a hash with 16 digits in a row) is in a string and is left at once;
 * one between separators may still be in a string (parseExact looks at the quotes).
 */
function numberAt(text: string, at: number): { start: number; end: number; token: string } | undefined {
  let start = at;
  let end = at + 1;
  while (start > 0 && numberChar(text.charCodeAt(start - 1))) start--;
  while (end < text.length && numberChar(text.charCodeAt(end))) end++;
  if (start > 0 && !BEFORE_VALUE.test(text.charAt(start - 1))) return undefined;
  if (end < text.length && !AFTER_VALUE.test(text.charAt(end))) return undefined;
  const token = text.slice(start, end);
  return inexact(token) ? { start, end, token } : undefined;
}

/** Whether `text` may hold a number that JSON.parse would change (a quick look, no parse). */
export function mayHoldInexactNumbers(text: string): boolean {
  // A microsecond timestamp (16 digits, below 2^53) is a candidate, and exact: most text ends here.
  for (const m of text.matchAll(CANDIDATES)) if (numberAt(text, m.index)) return true;
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
  for (const m of text.matchAll(CANDIDATES)) {
    if (m.index < copied) continue;
    const number = numberAt(text, m.index);
    if (!number) continue;
    for (let q = text.indexOf('"', scanned); q !== -1 && q < number.start; q = text.indexOf('"', q + 1)) {
      if (!escapedQuote(text, q)) inString = !inString;
      scanned = q + 1;
    }
    if (inString) continue;
    const { start, end, token } = number;
    out += `${text.slice(copied, start)}"${MARK}${token}"`;
    copied = end;
  }
  return copied === 0 ? parsed : (JSON.parse(out + text.slice(copied)) as unknown);
}

/** JSON.stringify, with parseExact's placeholders written back as the numbers they hold. */
export function stringifyExact(value: unknown): string {
  const text = JSON.stringify(value);
  return text.includes(MARK) ? text.replace(PLACEHOLDER, '$1') : text;
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
