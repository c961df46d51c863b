/** Numbers a double cannot hold, carried through parse and stringify as sent (exact-json.ts). */
import { describe, expect, it } from 'vitest';
import { mayHoldInexactNumbers, parseExact, stringifyAsParsed, stringifyExact } from '../src/exact-json.js';

const roundTrip = (text: string) => stringifyExact(parseExact(text));

describe('parseExact and stringifyExact', () => {
  it('keep integers beyond 2^53, long decimals and numbers past a double\'s range as sent', () => {
    const text = '{"big":12345678901234567890,"neg":-9007199254740993,"dec":0.12345678901234567890123,"huge":1e400,"tiny":-2.5E-400,"list":[18446744073709551615,{"x":12345678901234567.5}]}';
    expect(JSON.stringify(JSON.parse(text))).not.toBe(text); // what JSON.parse alone does
    expect(roundTrip(text)).toBe(text);
  });

  it('leave numbers a double holds as numbers, and strings as they are', () => {
    const text = '{"ts":1733356800000,"max":9007199254740991,"f":0.1,"e":1e21,"z":-0.000000000000001,"s":"12345678901234567890","q":"a\\"12345678901234567890","k":"1e400"}';
    const parsed = parseExact(text) as Record<string, unknown>;
    expect(parsed).toEqual(JSON.parse(text));
    expect(typeof parsed.max).toBe('number');
    expect(stringifyExact(parsed)).toBe(JSON.stringify(JSON.parse(text)));
    expect(mayHoldInexactNumbers('{"a":1,"b":"x"}')).toBe(false);
  });

  it('refuses what JSON.parse refuses, even where the rewrite would make valid JSON', () => {
    expect(() => parseExact('{12345678901234567890:1}')).toThrow(SyntaxError);
    expect(() => parseExact('[12345678901234567890,]')).toThrow(SyntaxError);
    expect(() => parseExact('{"a":012345678901234567890}')).toThrow(SyntaxError);
  });

  it('stringifyAsParsed writes each kept number as JSON.parse reads it (what a JavaScript receiver signs over)', () => {
    const text = '{"data":[{"id":12345678901234567890,"n":1e400,"s":"~hp-exact-0000000000000000~1"}]}';
    expect(stringifyAsParsed(parseExact(text))).toBe(JSON.stringify(JSON.parse(text)));
    // A string that looks like a placeholder but lacks this process's mark is left alone.
    expect(roundTrip(text)).toBe(text);
  });
});

describe('mayHoldInexactNumbers', () => {
  it('looks no further for ordinary data: UUIDs, millisecond timestamps, short decimals', () => {
    expect(mayHoldInexactNumbers('{"id":"0192f4e1-4e12-7abc-9e10-3e1234567890","ts":1733356800000,"amount":123.45,"phone":"+1 415 555 0100"}')).toBe(false);
    expect(mayHoldInexactNumbers('{"n":1e400}')).toBe(true);
    expect(mayHoldInexactNumbers('{"n":-2.5E-400}')).toBe(true);
    expect(mayHoldInexactNumbers('{"n":[12345678901234567]}')).toBe(true);
  });
});
