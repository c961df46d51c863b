import { createHash } from 'node:crypto';
import { withExactNumbers, type SourceRecord } from '@hookpost/contract';

export type ChangeKind = 'created' | 'updated' | 'deleted';

/** Canonical JSON: object keys sorted at every level, so equal content hashes equally. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/**
 * A record's content fingerprint: everything but `updated_at` (a touch that changes
 * nothing else is not a change). 16 bytes of SHA-256.
 */
export function fingerprint(record: SourceRecord): Buffer {
  const { updated_at: _ignored, ...content } = record;
  // A number kept exact is hashed as its text, not as this process's placeholder for it.
  return createHash('sha256').update(withExactNumbers(canonical(content))).digest().subarray(0, 16);
}

export interface Seen {
  fingerprint: Buffer;
  deleted: boolean;
}

export interface Change {
  kind: ChangeKind;
  record: SourceRecord;
}

export interface PageDiff {
  /** Real changes, in page order. */
  changes: Change[];
  /** Fingerprints to store (new or different). */
  store: { id: string; fingerprint: Buffer; deleted: boolean }[];
}

/** The newest `updated_at` among records (null: none readable): how far a listing got. */
export function latestUpdate(records: readonly Pick<SourceRecord, 'updated_at'>[]): Date | null {
  let max: number | null = null;
  for (const r of records) {
    const t = Date.parse(r.updated_at);
    if (!Number.isNaN(t) && (max === null || t > max)) max = t;
  }
  return max === null ? null : new Date(max);
}

/**
 * Compares a page with what the stream saw before. A record is a change when its
 * fingerprint differs from the stored one, or when it was never seen and changed at
 * or after `baseline` (before that it is history, not news). Never-seen records
 * created at or after `baseline` are `created`; tombstones are `deleted` (once);
 * the rest are `updated`. A record listed twice in one page counts once (its last
 * version).
 */
export function diffPage(records: readonly SourceRecord[], seen: ReadonlyMap<string, Seen>, baseline: Date): PageDiff {
  const last = new Map<string, SourceRecord>();
  for (const r of records) last.set(r.id, r);
  const changes: Change[] = [];
  const store: PageDiff['store'] = [];
  const base = baseline.getTime();
  for (const r of last.values()) {
    const updated = Date.parse(r.updated_at);
    const deleted = r.deleted_at !== undefined && r.deleted_at !== null;
    const fp = fingerprint(r);
    const prev = seen.get(r.id);
    if (prev && prev.deleted === deleted && prev.fingerprint.equals(fp)) continue;
    store.push({ id: r.id, fingerprint: fp, deleted });
    if (prev?.deleted && deleted) continue;
    if (!prev && updated < base) continue;
    const kind: ChangeKind = deleted ? 'deleted' : !prev && Date.parse(r.created_at) >= base ? 'created' : prev?.deleted ? 'created' : 'updated';
    changes.push({ kind, record: r });
  }
  return { changes, store };
}
