/** A failure that repeats while its cause lasts is logged once, then sparsely, then its end (failure-streak.ts). */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { expect, test } from 'vitest';
import { FailureStreak } from '../src/failure-streak.js';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  return { logger: pino({ level: 'info' }, stream), lines };
}

const flush = () => new Promise((r) => setImmediate(r));

test('a streak of failures: the first in full, then one line per period with the count, then the recovery', async () => {
  const { logger, lines } = capture();
  let now = 1_000_000;
  const streak = new FailureStreak(logger, { failing: 'claim failed; retrying shortly', recovered: 'claims work again', everyMs: 30_000, now: () => now });

  streak.succeeded(); // nothing was failing: nothing to say
  for (let i = 0; i < 95; i++) {
    streak.failed(new Error(`connect ECONNREFUSED (${i})`));
    now += 1000; // one retry a second, as the claim loop does
  }
  expect(streak.failing).toBe(true);
  streak.succeeded();
  streak.succeeded();
  await flush();

  expect(lines.map((l) => l.msg)).toEqual([
    'claim failed; retrying shortly',
    'claim failed; retrying shortly (still failing)',
    'claim failed; retrying shortly (still failing)',
    'claim failed; retrying shortly (still failing)',
    'claims work again',
  ]);
  expect(lines[0]).toMatchObject({ level: 50, err: { message: 'connect ECONNREFUSED (0)' } });
  expect(lines[1]).toMatchObject({ failures: 31, failingForMs: 30_000, err: { message: 'connect ECONNREFUSED (30)' } });
  expect(lines[3]).toMatchObject({ failures: 91, failingForMs: 90_000 });
  expect(lines[4]).toMatchObject({ level: 30, failures: 95, failedForMs: 95_000 });
  expect(streak.failing).toBe(false);
});

test('a new streak after a recovery is logged in full again, at the chosen level', async () => {
  const { logger, lines } = capture();
  let now = 0;
  const streak = new FailureStreak(logger, { failing: 'lease reaper failed', recovered: 'lease reaper works again', level: 'warn', now: () => now });
  streak.failed(new Error('a'));
  streak.succeeded();
  now += 5;
  streak.failed(new Error('b'), { tick: 2 });
  await flush();
  expect(lines.map((l) => [l.level, l.msg])).toEqual([
    [40, 'lease reaper failed'],
    [30, 'lease reaper works again'],
    [40, 'lease reaper failed'],
  ]);
  expect(lines[2]).toMatchObject({ tick: 2, err: { message: 'b' } });
});
