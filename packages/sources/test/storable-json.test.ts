/** Source answers with what Postgres cannot store (storable-json.ts). */
import { describe, expect, test } from 'vitest';
import { parseStorableJson } from '../src/storable-json.js';

const parse = (text: string) => parseStorableJson(Buffer.from(text));

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

  test('malformed JSON still fails', () => {
    expect(() => parse('{"a":')).toThrow(SyntaxError);
    expect(() => parse('{"a":"\\u0000"')).toThrow(SyntaxError);
  });
});
