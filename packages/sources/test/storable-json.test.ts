/** Source answers with what Postgres cannot store (storable-json.ts). */
import { describe, expect, test } from 'vitest';
import { MAX_JSON_DEPTH, nestsDeeperThan, tooDeepMarker } from '@hookpost/runtime';
import { stringifyExact } from '@hookpost/contract';
import { parseStorableJson } from '../src/storable-json.js';

const parse = (text: string) => parseStorableJson(Buffer.from(text)).exact;

describe('parseStorableJson', () => {
  test('NUL and unpaired surrogates become U+FFFD, in values and keys, at any depth', () => {
    expect(parse('{"a":"x\\u0000y","b":["\\ud800","z\\udc00"],"c\\u0000":{"d":"\\uDBFF!"}}')).toEqual({
      a: 'x\ufffdy',
      b: ['\ufffd', 'z\ufffd'],
      'c\ufffd': { d: '\ufffd!' },
    });
  });

  test('everything else is left as it was', () => {
    const text = '{"emoji":"\\ud83d\\ude00","text":"\\\\u0000 is six characters","n":1,"nested":[{"k":null}]}';
    expect(parse(text)).toEqual(JSON.parse(text));
    expect(parse('{"plain":"ünïcödé 😀"}')).toEqual({ plain: 'ünïcödé 😀' });
  });

  test('numbers a double would change are kept as sent (exact), and read as JSON.parse reads them (plain); with what Postgres cannot store made storable in both', () => {
    const text = '{"data":[{"id":"r1","big":12345678901234567890,"dec":0.12345678901234567890123,"ok":1.5,"s":"12345678901234567890","n\\u0000":"a\\u0000"}]}';
    const { plain, exact } = parseStorableJson(Buffer.from(text));
    expect(plain).toEqual({ data: [{ id: 'r1', big: 12345678901234567000, dec: 0.12345678901234568, ok: 1.5, s: '12345678901234567890', 'n\ufffd': 'a\ufffd' }] });
    expect(stringifyExact(exact)).toBe('{"data":[{"id":"r1","big":12345678901234567890,"dec":0.12345678901234567890123,"ok":1.5,"s":"12345678901234567890","n\ufffd":"a\ufffd"}]}');
    // Without such numbers there is one parse, and one object.
    const same = parseStorableJson(Buffer.from('{"data":[{"id":"r1","n":1733356800000123}]}'));
    expect(same.exact).toBe(same.plain);
  });

  test('malformed JSON still fails', () => {
    expect(() => parse('{"a":')).toThrow(SyntaxError);
    expect(() => parse('{"a":"\\u0000"')).toThrow(SyntaxError);
  });
});

describe('parseStorableJson: nesting', () => {
  const nested = (levels: number, inner = '1') => `${'['.repeat(levels)}${inner}${']'.repeat(levels)}`;
  const marker = tooDeepMarker();

  test(`objects and arrays at level ${MAX_JSON_DEPTH} become a marker; the levels above and the siblings stay`, () => {
    // The answer is level 0, "data" level 1, the record level 2, its "deep" field level 3.
    const answer = parse(`{"data":[{"id":"r1","deep":${nested(MAX_JSON_DEPTH)},"name":"kept"}]}`) as { data: { deep: unknown; name: string }[] };
    const record = answer.data[0];
    expect(record?.name).toBe('kept');
    let level = 3;
    let node: unknown = record?.deep;
    while (Array.isArray(node)) {
      node = node[0];
      level++;
    }
    expect(level).toBe(MAX_JSON_DEPTH);
    expect(node).toBe(marker);
  });

  test('nesting just inside the limit is left alone, and brackets inside strings do not count', () => {
    const text = `{"a":${nested(MAX_JSON_DEPTH - 1)},"s":"${'['.repeat(500)}"}`;
    expect(parse(text)).toEqual(JSON.parse(text));
    expect(nestsDeeperThan(Buffer.from(text))).toBe(false);
    expect(nestsDeeperThan(Buffer.from(`{"a":${nested(MAX_JSON_DEPTH)}}`))).toBe(true);
  });

  test('an answer nesting 200,000 levels deep, with a NUL inside, parses without overflowing and can be serialised', () => {
    const text = `{"data":[{"id":"r1","deep":${nested(200_000, '"x\\u0000"')},"name":"a\\u0000b"}]}`;
    const answer = parse(text) as { data: { name: string }[] };
    expect(answer.data[0]?.name).toBe('a\ufffdb');
    expect(JSON.stringify(answer)).toContain(marker);
  });

  test('renamed keys keep their order, and a key spelled __proto__ stays a key', () => {
    const value = parse('{"a":1,"b\\u0000":2,"__proto__":{"x":1},"c":3}') as Record<string, unknown>;
    expect(Object.keys(value)).toEqual(['a', 'b\ufffd', '__proto__', 'c']);
    expect(Object.getPrototypeOf(value)).toBe(Object.prototype);
  });
});
