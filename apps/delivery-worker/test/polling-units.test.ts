/** The pure parts of polling: what a page sends to whom, and when a stream runs next. */
import type { SourceRecord } from '@hookpost/contract';
import type { StreamMember } from '@hookpost/db';
import { describe, expect, test } from 'vitest';
import { matchesFilters, planDeliveries } from '../src/polling/delivery-pages.js';
import { nextRunAt, RequestGate, streamIntervalMs } from '../src/polling/schedule.js';

const member = (id: string, over: Partial<StreamMember> = {}): StreamMember => ({
  id,
  workspace_id: 'ws',
  event_types: ['record:created'],
  page_max_limit: null,
  interval_minutes: 1,
  is_active: true,
  is_paused: false,
  initial_sync: null,
  fields: null,
  ...over,
});
const rec = (id: string, over: Partial<SourceRecord> = {}): SourceRecord => ({ id, created_at: '2026-01-01T00:00:00Z', updated_at: '2026-01-01T00:00:00Z', ...over });

let n = 0;
const newId = () => `d${++n}`;

describe('planDeliveries', () => {
  const changes = [
    { kind: 'created' as const, record: rec('c1') },
    { kind: 'created' as const, record: rec('c2') },
    { kind: 'created' as const, record: rec('c3') },
    { kind: 'updated' as const, record: rec('u1') },
    { kind: 'deleted' as const, record: rec('x1', { deleted_at: '2026-01-02T00:00:00Z' }) },
  ];

  test('each webhook gets its kinds, in pages of page_max_limit; paused are held; disabled get nothing', () => {
    const out = planDeliveries({
      members: [
        member('created', { page_max_limit: 2 }),
        member('all', { event_types: [] }),
        member('deleted', { event_types: ['record:deleted'], is_paused: true }),
        member('off', { is_active: false }),
      ],
      initial: new Set(),
      changes,
      records: changes.map((c) => c.record),
      lastPage: true,
      defaultPageSize: 100,
      newId,
      runStartedAt: new Date(0),
    });
    const view = out.map((d) => [d.webhook_id, d.status, (d.payload as { type: string }).type, (d.payload as { records: SourceRecord[] }).records.map((r) => r.id)]);
    expect(view).toEqual([
      ['created', 'pending', 'record:created', ['c1', 'c2']],
      ['created', 'pending', 'record:created', ['c3']],
      ['all', 'pending', 'record:created', ['c1', 'c2', 'c3']],
      ['all', 'pending', 'record:updated', ['u1']],
      ['all', 'pending', 'record:deleted', ['x1']],
      ['deleted', 'held', 'record:deleted', ['x1']],
    ]);
    for (const d of out) expect((d.payload as { unified_type: string }).unified_type).toBe('VIRTUAL');
  });

  test('during an initial sync: deletions made since the run began are sent, older ones not; a webhook still pending gets nothing', () => {
    const before = rec('old-gone', { updated_at: '2026-01-01T00:00:00Z', deleted_at: '2026-01-01T00:00:00Z' });
    const during = rec('just-gone', { updated_at: '2026-01-03T00:00:00Z', deleted_at: '2026-01-03T00:00:00Z' });
    const out = planDeliveries({
      members: [member('syncing', { initial_sync: 'running', event_types: [] }), member('waiting', { initial_sync: 'pending', event_types: [] })],
      initial: new Set(['syncing', 'waiting']),
      changes: [{ kind: 'deleted', record: before }, { kind: 'deleted', record: during }],
      records: [before, during, rec('live')],
      lastPage: false,
      defaultPageSize: 100,
      newId,
      runStartedAt: new Date('2026-01-02T00:00:00Z'),
    });
    expect(out.map((d) => [d.webhook_id, (d.payload as { unified_type: string }).unified_type, (d.payload as { records: SourceRecord[] }).records.map((r) => r.id)])).toEqual([
      ['syncing', 'INITIAL-PARTIAL', ['live']],
      ['syncing', 'VIRTUAL', ['just-gone']],
    ]);
  });

  test('an initial sync sends every live record; only the listing’s last page is INITIAL-COMPLETE, even when empty', () => {
    const records = [rec('a'), rec('b'), rec('gone', { deleted_at: '2026-01-02T00:00:00Z' }), rec('c')];
    const plan = (lastPage: boolean, rs: SourceRecord[]) =>
      planDeliveries({ members: [member('new', { page_max_limit: 2, initial_sync: 'running' })], initial: new Set(['new']), changes: [], records: rs, lastPage, defaultPageSize: 100, newId, runStartedAt: new Date(0) }).map((d) => [
        (d.payload as { unified_type: string }).unified_type,
        (d.payload as { records: SourceRecord[] }).records.map((r) => r.id),
      ]);
    expect(plan(false, records)).toEqual([
      ['INITIAL-PARTIAL', ['a', 'b']],
      ['INITIAL-PARTIAL', ['c']],
    ]);
    expect(plan(true, records)).toEqual([
      ['INITIAL-PARTIAL', ['a', 'b']],
      ['INITIAL-COMPLETE', ['c']],
    ]);
    expect(plan(true, [])).toEqual([['INITIAL-COMPLETE', []]]);
  });

  test('filters are string equality on fields the record has', () => {
    expect(matchesFilters(rec('1', { owner_id: 'a', amount: 5 } as Partial<SourceRecord>), { owner_id: 'a', amount: '5' })).toBe(true);
    expect(matchesFilters(rec('1', { owner_id: 'b' } as Partial<SourceRecord>), { owner_id: 'a' })).toBe(false);
    expect(matchesFilters(rec('1'), { owner_id: 'a' })).toBe(true); // projected away: the source filtered it
  });
});

describe('schedule', () => {
  const t = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s));
  test('one interval after it was due; a late run does not cause a burst; jitter is bounded', () => {
    const mid = () => 0.5;
    expect(nextRunAt({ scheduledAt: t(0), startedAt: t(1), intervalMs: 60_000, jitter: 0.05, random: mid })).toEqual(t(60));
    expect(nextRunAt({ scheduledAt: t(0), startedAt: t(100), intervalMs: 60_000, jitter: 0, random: mid })).toEqual(t(130));
    expect(nextRunAt({ scheduledAt: t(0), startedAt: t(0), intervalMs: 60_000, jitter: 0.05, random: () => 1 })).toEqual(t(63));
    expect(nextRunAt({ scheduledAt: t(0), startedAt: t(0), intervalMs: 3_600_000, jitter: 0.05, random: () => 0 })).toEqual(t(3600 - 30));
  });

  test('a stream polls at its most eager webhook’s interval, never below the minimum', () => {
    expect(streamIntervalMs([5, 1, null], 60, 1)).toBe(60_000);
    expect(streamIntervalMs([null], 60, 1)).toBe(3_600_000);
    expect(streamIntervalMs([0.001], 60, 0.5)).toBe(30_000);
  });

  test('the request gate lets one second’s worth through at once, then keeps to the rate', async () => {
    const gate = new RequestGate(10, null);
    let started = Date.now();
    for (let i = 0; i < 10; i++) await gate.pass();
    expect(Date.now() - started).toBeLessThan(100);
    started = Date.now();
    for (let i = 0; i < 5; i++) await gate.pass();
    expect(Date.now() - started).toBeGreaterThanOrEqual(450);
    // A new run right after a request starts with an (almost) empty bucket.
    const next = new RequestGate(10, gate.lastRequestAt);
    started = Date.now();
    await next.pass();
    expect(Date.now() - started).toBeGreaterThanOrEqual(80);
  });

  test('a last request time ahead of this clock (another worker’s clock runs ahead) waits one request’s spacing, not the skew', async () => {
    const gate = new RequestGate(10, new Date(Date.now() + 200_000));
    const started = Date.now();
    await gate.pass();
    expect(Date.now() - started).toBeLessThan(500);
  });
});
