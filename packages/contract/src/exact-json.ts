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
 * Text that may hold a number a double changes: 16 or more digits in a row (a dot between them
 * allowed), or a number with an exponent of three digits or more (past a double's range), not
 * part of a word (hex in a UUID such as `…-4e123…` is not). Strings with such runs (an id sent
 * as a string, say) match too; they are only read more slowly.
 */
const MAYBE_INEXACT = /\d[\d.]{15}|(?<![\w.-])-?\d+(?:\.\d+)?[eE][+-]?\d{3}/;
/** Every string (skipped) and number in a JSON text. */
const TOKENS = /"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g;

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
  return !Number.isFinite(n) || canonical(token) !== canonical(String(n));
}

/** Whether `text` may hold a number that JSON.parse would change (a quick look, no parse). */
export function mayHoldInexactNumbers(text: string): boolean {
  return MAYBE_INEXACT.test(text);
}

/**
 * JSON.parse, except that numbers a double would change are read as placeholders (see the
 * module) for stringifyExact to write back as sent. Throws where JSON.parse throws.
 */
export function parseExact(text: string): unknown {
  const parsed: unknown = JSON.parse(text);
  if (!MAYBE_INEXACT.test(text)) return parsed;
  let marked = false;
  // The text is valid JSON (it parsed): its numbers are all values, so each one replaced by a
  // string leaves it valid, with the same shape.
  const rewritten = text.replace(TOKENS, (token) => {
    if (token.charCodeAt(0) === 0x22 || !inexact(token)) return token;
    marked = true;
    return `"${MARK}${token}"`;
  });
  return marked ? (JSON.parse(rewritten) as unknown) : parsed;
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
