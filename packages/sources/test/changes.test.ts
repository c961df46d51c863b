import { createHash } from 'node:crypto';
import { parseExact, type SourceRecord } from '@hookpost/contract';
import { describe, expect, test } from 'vitest';
import { diffPage, fingerprint, latestUpdate, type Seen } from '../src/changes.js';

const baseline = new Date('2026-06-01T00:00:00.000Z');
const rec = (id: string, over: Partial<SourceRecord> & Record<string, unknown> = {}): SourceRecord => ({
  id,
  created_at: '2026-05-01T00:00:00.000Z',
  updated_at: '2026-06-02T00:00:00.000Z',
  name: `name ${id}`,
  ...over,
});
const seenOf = (...records: SourceRecord[]): Map<string, Seen> =>
  new Map(records.map((r) => [r.id, { fingerprint: fingerprint(r), deleted: !!r.deleted_at }]));

describe('fingerprint', () => {
  test('ignores updated_at and key order; sees every other change, nested too', () => {
    const a = rec('1', { nested: { x: 1, y: [1, 2] } });
    expect(fingerprint({ ...a, updated_at: '2030-01-01T00:00:00.000Z' }).equals(fingerprint(a))).toBe(true);
    expect(fingerprint({ nested: { y: [1, 2], x: 1 }, name: a.name, id: '1', created_at: a.created_at, updated_at: a.updated_at } as SourceRecord).equals(fingerprint(a))).toBe(true);
    expect(fingerprint({ ...a, nested: { x: 1, y: [2, 1] } }).equals(fingerprint(a))).toBe(false);
    expect(fingerprint({ ...a, raw: { vendor: 1 } }).equals(fingerprint(a))).toBe(false);
  });

  test('hashes a number kept exact as its text: the same in every process (a placeholder carries a mark drawn per process)', () => {
    const a = rec('1', { big: parseExact('12345678901234567890') });
    const text = '{"big":12345678901234567890,"created_at":"2026-05-01T00:00:00.000Z","id":"1","name":"name 1"}';
    expect(fingerprint(a).equals(createHash('sha256').update(text).digest().subarray(0, 16))).toBe(true);
    expect(fingerprint(a).equals(fingerprint(rec('1', { big: 12345678901234567000 })))).toBe(false);
  });
});

describe('diffPage', () => {
  test('classifies created / updated / deleted against what was seen and the baseline', () => {
    const old = rec('old', { updated_at: '2026-05-15T00:00:00.000Z' });
    const known = rec('known');
    const gone = rec('gone');
    const seen = seenOf(known, gone);
    const page = [
      old, // never seen, changed before the baseline: history, not news
      rec('known', { name: 'renamed' }), // updated
      { ...known, updated_at: '2026-06-03T00:00:00.000Z' }, // a touch after the rename? last version wins within a page
      rec('gone', { deleted_at: '2026-06-02T00:00:00.000Z' }), // deleted
      rec('new', { created_at: '2026-06-02T00:00:00.000Z' }), // created
      rec('existing-unseen'), // created before the baseline, changed after: updated
    ];
    const d = diffPage(page, seen, baseline);
    expect(d.changes.map((c) => [c.record.id, c.kind])).toEqual([
      ['gone', 'deleted'],
      ['new', 'created'],
      ['existing-unseen', 'updated'],
    ]);
    // 'known' ended the page as it was seen (the touch came last): no change, nothing stored.
    expect(d.store.map((s) => s.id).sort()).toEqual(['existing-unseen', 'gone', 'new', 'old']);
    expect(latestUpdate(page)?.toISOString()).toBe('2026-06-03T00:00:00.000Z');
  });

  test('a touch is not a change; a tombstone is sent once; a record back from the dead is created', () => {
    const r = rec('r');
    const touched = diffPage([{ ...r, updated_at: '2026-07-01T00:00:00.000Z' }], seenOf(r), baseline);
    expect(touched.changes).toEqual([]);
    expect(touched.store).toEqual([]);
    const dead = rec('r', { deleted_at: '2026-07-01T00:00:00.000Z' });
    expect(diffPage([dead], seenOf(r), baseline).changes.map((c) => c.kind)).toEqual(['deleted']);
    const again = diffPage([{ ...dead, updated_at: '2026-07-02T00:00:00.000Z', deleted_at: '2026-07-02T00:00:00.000Z' }], seenOf(dead), baseline);
    expect(again.changes).toEqual([]);
    expect(diffPage([rec('r', { name: 'back' })], seenOf(dead), baseline).changes.map((c) => c.kind)).toEqual(['created']);
  });
});
