/** Numbers a double cannot hold, carried through parse and stringify as sent (exact-json.ts). */
import { describe, expect, it } from 'vitest';
import { mayHoldInexactNumbers, parseExact, stringifyAsParsed, stringifyExact } from '../src/exact-json.js';

const roundTrip = (text: string) => stringifyExact(parseExact(text));

describe('parseExact and stringifyExact', () => {
  it('keep integers beyond 2^53, long decimals and numbers too small for a double as sent', () => {
    const text = '{"big":12345678901234567890,"neg":-9007199254740993,"dec":0.12345678901234567890123,"tiny":-2.5E-400,"list":[18446744073709551615,{"x":12345678901234567.5}]}';
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

  it('tells runs in strings from numbers, after escaped quotes and backslashes too', () => {
    const text = String.raw`{"h":"9a70512411234567890123456789ef","q":"say \"12345678901234567890\"","b":"ends in \\","n":12345678901234567890,"x":-1234567890.1234567890e-5,"t":[0.12345678901234567,"18446744073709551615"]}`;
    const parsed = parseExact(text) as Record<string, unknown>;
    expect(parsed.h).toBe('9a70512411234567890123456789ef');
    expect(parsed.q).toBe('say "12345678901234567890"');
    expect(parsed.b).toBe('ends in \\');
    expect(stringifyExact(parsed)).toBe(text);
  });

  it('leaves numbers past a double\'s range, or with more than 1,000 digits, to JSON.parse (jsonb would write 1e131071 as 131 KB)', () => {
    const long = `1${'2'.repeat(1000)}`;
    const text = `{"huge":1e400,"x":-1e131071,"y":1e12345678901234567890,"z":1e-500,"long":${long}}`;
    expect(roundTrip(text)).toBe(JSON.stringify(JSON.parse(text)));
    expect(mayHoldInexactNumbers(text)).toBe(false);
  });

  it('reads a run of a million digits (or exponents) once, not once per 16 of them', () => {
    // Widening each candidate in such a run again took 15 s for 256 K digits.
    for (const run of ['7'.repeat(1_000_000), '1e100'.repeat(200_000)]) {
      const text = `{"s":"${run}","n":12345678901234567890}`;
      expect(mayHoldInexactNumbers(text)).toBe(true);
      expect(stringifyExact(parseExact(text))).toBe(text);
    }
  });

  it('refuses what JSON.parse refuses, even where the rewrite would make valid JSON', () => {
    expect(() => parseExact('{12345678901234567890:1}')).toThrow(SyntaxError);
    expect(() => parseExact('[12345678901234567890,]')).toThrow(SyntaxError);
    expect(() => parseExact('{"a":012345678901234567890}')).toThrow(SyntaxError);
  });

  it('stringifyAsParsed writes each kept number as JSON.parse reads it (what a JavaScript receiver signs over)', () => {
    const text = '{"data":[{"id":12345678901234567890,"n":1e-350,"s":"~hp-exact-0000000000000000~1"}]}';
    expect(stringifyAsParsed(parseExact(text))).toBe(JSON.stringify(JSON.parse(text)));
    // A string that looks like a placeholder but lacks this process's mark is left alone.
    expect(roundTrip(text)).toBe(text);
  });
});

describe('mayHoldInexactNumbers', () => {
  it('looks no further for ordinary data: UUIDs, timestamps in ms or µs, short decimals', () => {
    expect(mayHoldInexactNumbers('{"id":"0192f4e1-4e12-7abc-9e10-3e1234567890","ts":1733356800000,"us":1796423000000000,"amount":123.45,"phone":"+1 415 555 0100"}')).toBe(false);
    expect(mayHoldInexactNumbers('{"max":9007199254740991,"p":3.141592653589793}')).toBe(false);
    expect(mayHoldInexactNumbers('{"check":"7e7148d3528a","c2":"0e586bbbe0","c3":"2301e727"}')).toBe(false);
    expect(mayHoldInexactNumbers('{"n":1e400}')).toBe(false); // left to JSON.parse (Infinity, written null)
    expect(mayHoldInexactNumbers('{"n":-2.5E-400}')).toBe(true);
    expect(mayHoldInexactNumbers('{"n":[12345678901234567]}')).toBe(true);
    expect(mayHoldInexactNumbers('{"n":9007199254740993}')).toBe(true);
    expect(mayHoldInexactNumbers('{"s":"1.2.3.4.5.6.7.8.9.0.1"}')).toBe(false); // right after a quote: in a string
    expect(mayHoldInexactNumbers('{"s":"a 12345678901234567890 b"}')).toBe(true); // between separators: quotes are looked at
  });
});
