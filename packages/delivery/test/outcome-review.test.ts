/**
 * Review of what an attempt's outcome decides: success/gone/failure per status, the
 * default schedule (unified.to's: Fibonacci minutes, 20 retries = 21 attempts),
 * jitter bounds, Retry-After parsing (delta-seconds, HTTP-date, and what is neither),
 * RETRY_SCHEDULE parse errors, and the sender's answers to 1xx/204/205/3xx.
 */
import { describe, expect, it } from 'vitest';
import { createAddressPolicy } from '../src/address-policy.js';
import { attemptLabel, outcomeOf, strainsEndpoint } from '../src/outcome.js';
import { DEFAULT_RETRY_POLICY, maxAttempts, parseRetryAfter, parseSchedule, retryDelayMs, retryPolicyFrom, type RetryPolicy } from '../src/retry-policy.js';
import { Sender } from '../src/sender.js';
import { localServer } from './local-server.js';

describe('outcomeOf', () => {
  it.each([200, 201, 202, 204, 205, 226, 299])('%i is success', (code) => {
    expect(outcomeOf({ statusCode: code, durationMs: 1 })).toBe('success');
    expect(attemptLabel({ statusCode: code, durationMs: 1 })).toBe('success');
  });
  it.each([100, 101, 199, 300, 301, 302, 304, 307, 308, 400, 404, 409, 429, 500, 503])('%i is a failure', (code) => {
    expect(outcomeOf({ statusCode: code, durationMs: 1 })).toBe('failure');
    expect(attemptLabel({ statusCode: code, durationMs: 1 })).toBe(`http_${code}`);
  });
  it('410 is gone; no answer is a failure', () => {
    expect(outcomeOf({ statusCode: 410, durationMs: 1 })).toBe('gone');
    expect(outcomeOf({ durationMs: 1, failure: { class: 'timeout', message: 'timed out' } })).toBe('failure');
    expect(attemptLabel({ durationMs: 1, failure: { class: 'timeout', message: 'timed out' } })).toBe('timeout');
  });
});

describe('strainsEndpoint: what halves an endpoint\'s share of sends, shared by its webhooks', () => {
  it.each([null, undefined, 500, 502, 503, 504, 429, 408])('%s strains it (no answer, overloaded, asks for fewer)', (code) => {
    expect(strainsEndpoint(code)).toBe(true);
  });
  it.each([200, 204, 400, 401, 403, 404, 409, 410, 422])('%s does not (an answer about one webhook: its credentials, its tenant)', (code) => {
    expect(strainsEndpoint(code)).toBe(false);
  });
});

describe('default schedule', () => {
  it("is unified.to's: retry n waits Fibonacci(n) minutes, 20 retries, 21 attempts", () => {
    const minutes = DEFAULT_RETRY_POLICY.scheduleSeconds.map((s) => s / 60);
    expect(minutes).toHaveLength(20);
    expect(minutes[0]).toBe(1); // "1st retry will wait 1 minute"
    expect(minutes[1]).toBe(2); // "2nd retry will wait 2 minutes"
    expect(minutes[6]).toBe(21); // "7th retry will wait 21 minutes"
    expect(minutes[11]).toBe(233); // "12th retry will wait 233 minutes"
    expect(maxAttempts(DEFAULT_RETRY_POLICY)).toBe(21);
    expect(parseSchedule('fibonacci')).toEqual(DEFAULT_RETRY_POLICY.scheduleSeconds);
  });
  it('the 20th retry is scheduled; after the 21st attempt there is none', () => {
    const p = { ...DEFAULT_RETRY_POLICY, jitter: 0 };
    expect(retryDelayMs(p, 20)).toBe(10946 * 60_000);
    expect(retryDelayMs(p, 21)).toBeNull();
  });
});

describe('jitter', () => {
  it('stays within ±jitter, and never goes negative even at jitter 1', () => {
    const p: RetryPolicy = { ...DEFAULT_RETRY_POLICY, jitter: 0.1 };
    expect(retryDelayMs(p, 1, undefined, () => 0)).toBe(54_000);
    expect(retryDelayMs(p, 1, undefined, () => 0.999999)).toBeLessThanOrEqual(66_000);
    expect(retryDelayMs({ ...p, jitter: 1 }, 1, undefined, () => 0)).toBeGreaterThanOrEqual(0);
  });
  it('scales with RETRY_TIME_SCALE', () => {
    expect(retryDelayMs({ ...DEFAULT_RETRY_POLICY, jitter: 0, timeScale: 0.001 }, 3)).toBe(180);
  });
});

describe('Retry-After', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  it('delta-seconds', () => {
    expect(parseRetryAfter('7', now)).toBe(7);
    expect(parseRetryAfter(' 7 ', now)).toBe(7);
    expect(parseRetryAfter('0', now)).toBe(0);
  });
  it('HTTP-date (IMF-fixdate, RFC 850, asctime)', () => {
    expect(parseRetryAfter('Thu, 01 Jan 2026 00:00:30 GMT', now)).toBe(30);
    expect(parseRetryAfter('Thursday, 01-Jan-26 00:00:30 GMT', now)).toBe(30);
    expect(parseRetryAfter('Thu Jan  1 00:00:30 2026', now)).toBeDefined();
    expect(parseRetryAfter('Wed, 31 Dec 2025 23:00:00 GMT', now)).toBe(0); // in the past: now
  });
  it.each(['-1', '-30', '1.5', '0.5', '10,20', '1e3', 'abc', '12abc', '', ' '])('ignores what is neither (%j): the schedule applies', (v) => {
    // Before the fix, "-1", "1.5", "0.5" and "10,20" went through Date.parse as dates
    // in the past: a retry at once, and a receiver answering so burnt every retry in a second.
    expect(parseRetryAfter(v, now)).toBeUndefined();
  });
  it('is bounded by RETRY_AFTER_MAX_SECONDS and not scaled', () => {
    const p: RetryPolicy = { ...DEFAULT_RETRY_POLICY, jitter: 0, timeScale: 0.001, maxRetryAfterSeconds: 5 };
    expect(retryDelayMs(p, 1, 2)).toBe(2000);
    expect(retryDelayMs(p, 1, 1e20)).toBe(5000);
    expect(retryDelayMs(p, 1, parseRetryAfter('99999999999999999999'))).toBe(5000);
  });
  it('a wait of 0 ("0", or a date already past) does not retry at once: the schedule applies', () => {
    // Before the fix a 429 with `Retry-After: 0` was retried immediately, every time: the
    // 20 retries were spent in milliseconds and the delivery was dead.
    const p: RetryPolicy = { ...DEFAULT_RETRY_POLICY, jitter: 0 };
    expect(retryDelayMs(p, 1, 0)).toBe(60_000);
    expect(retryDelayMs(p, 3, parseRetryAfter('Wed, 21 Oct 2015 07:28:00 GMT'))).toBe(180_000);
  });
  it('lengthens the schedule\'s wait, never shortens it', () => {
    // Before, `Retry-After: 1` replaced the schedule: a receiver answering 429 with it spent
    // all 20 retries in 20 s, where unified.to's schedule spreads them over weeks.
    const p: RetryPolicy = { ...DEFAULT_RETRY_POLICY, jitter: 0 };
    expect(retryDelayMs(p, 1, 1)).toBe(60_000);
    expect(retryDelayMs(p, 20, 1)).toBe(10946 * 60_000);
    expect(retryDelayMs(p, 1, 600)).toBe(600_000);
  });
  it('past the last attempt there is no retry, whatever Retry-After says', () => {
    expect(retryDelayMs(DEFAULT_RETRY_POLICY, 21, 5)).toBeNull();
  });
});

describe('RETRY_SCHEDULE', () => {
  it('parses fibonacci[:N] and seconds', () => {
    expect(parseSchedule('fibonacci:3')).toEqual([60, 120, 180]);
    expect(parseSchedule(' 5, 30 ,300 ')).toEqual([5, 30, 300]);
    expect(parseSchedule('fibonacci:0')).toEqual([]);
  });
  it.each(['', ' ', '5,,30', '5,', 'abc', '5;30', '-5', 'Infinity', 'fibonacci:x'])('refuses %j with an error naming RETRY_SCHEDULE', (spec) => {
    expect(() => parseSchedule(spec)).toThrow(/RETRY_SCHEDULE/);
    expect(() => retryPolicyFrom({ schedule: spec, jitter: 0.1, timeScale: 1, maxRetryAfterSeconds: 60 })).toThrow(/RETRY_SCHEDULE/);
  });
});

describe('Sender: 1xx, 204, 205, 3xx', () => {
  const delivery = { body: '{}', headers: { 'content-type': 'application/json' } };
  const seen: string[] = [];
  const local = localServer((req, res) => {
    req.resume();
    const path = req.url ?? '/';
    seen.push(path);
    if (path === '/hints') {
      res.writeEarlyHints({ link: '</x.css>; rel=preload' });
      return res.writeHead(200).end('ok');
    }
    if (path === '/204') return res.writeHead(204).end();
    if (path === '/205') return res.writeHead(205).end();
    if (path === '/moved') return res.writeHead(301, { location: '/target' }).end('moved');
    if (path === '/see-other') return res.writeHead(303, { location: '/target', 'retry-after': '9' }).end();
    if (path === '/target') return res.writeHead(200).end('target');
    if (path === '/500-retry-after') return res.writeHead(500, { 'retry-after': '9' }).end();
    if (path === '/503-date') return res.writeHead(503, { 'retry-after': new Date(Date.now() + 20_000).toUTCString() }).end();
    res.writeHead(404).end();
  });
  const sender = () => new Sender({ policy: createAddressPolicy(['127.0.0.0/8']), timeoutMs: 1000, connectTimeoutMs: 500 });

  it('an informational answer before the final one: the final one counts', async () => {
    const s = sender();
    const r = await s.send(`${local.url()}/hints`, delivery);
    expect(r.statusCode).toBe(200);
    expect(outcomeOf(r)).toBe('success');
    await s.close();
  });
  it('204 and 205 are success', async () => {
    const s = sender();
    expect(outcomeOf(await s.send(`${local.url()}/204`, delivery))).toBe('success');
    expect(outcomeOf(await s.send(`${local.url()}/205`, delivery))).toBe('success');
    await s.close();
  });
  it('3xx is a failure and is not followed; Retry-After is read on 429/503 only', async () => {
    const s = sender();
    seen.length = 0;
    const moved = await s.send(`${local.url()}/moved`, delivery);
    expect(moved).toMatchObject({ statusCode: 301 });
    expect(outcomeOf(moved)).toBe('failure');
    const other = await s.send(`${local.url()}/see-other`, delivery);
    expect(other.statusCode).toBe(303);
    expect(other.retryAfterSeconds).toBeUndefined();
    expect(seen).not.toContain('/target');
    expect((await s.send(`${local.url()}/500-retry-after`, delivery)).retryAfterSeconds).toBeUndefined();
    const date = (await s.send(`${local.url()}/503-date`, delivery)).retryAfterSeconds;
    expect(date).toBeGreaterThan(15);
    expect(date).toBeLessThanOrEqual(20);
    await s.close();
  });
});
