import { exactString, type SourceRecord } from '@hookpost/contract';
import type { PageDelivery, StreamMember } from '@hookpost/db';
import type { StoredPayload } from '@hookpost/delivery';
import type { Change, ChangeKind } from '@hookpost/sources';

const KINDS: readonly ChangeKind[] = ['created', 'updated', 'deleted'];

function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

export interface PagePlan {
  members: readonly StreamMember[];
  /** Webhooks whose initial sync this run is. */
  initial: ReadonlySet<string>;
  changes: readonly Change[];
  /** Every record of the page (initial syncs send them all). */
  records: readonly SourceRecord[];
  /** The listing's last page: an initial sync's last page is INITIAL-COMPLETE. */
  lastPage: boolean;
  defaultPageSize: number;
  newId: () => string;
  /** When the run began: deletions a webhook in its initial sync is told of are those made since. */
  runStartedAt: Date;
}

/**
 * The deliveries one source page makes. Each webhook gets pages of at most its
 * `page_max_limit` records: the changes of the kinds it subscribed to (`VIRTUAL`), or,
 * during its initial sync, every live record (`INITIAL-PARTIAL`, the listing's last
 * page `INITIAL-COMPLETE`, sent even when empty so the end is always signalled) and the
 * deletions found (`VIRTUAL`, when it subscribed to them).
 * Paused webhooks' pages are held until resume; disabled webhooks get nothing.
 */
export function planDeliveries(p: PagePlan): PageDelivery[] {
  const out: PageDelivery[] = [];
  const live = p.records.filter((r) => r.deleted_at === undefined || r.deleted_at === null);
  for (const m of p.members) {
    // Waiting for its initial sync (it came, or came back, during this run): the next run is
    // its sync; pages of this one would come before its INITIAL pages.
    if (!m.is_active || m.initial_sync === 'pending') continue;
    const status = m.is_paused ? 'held' : 'pending';
    const size = m.page_max_limit ?? p.defaultPageSize;
    const push = (payload: StoredPayload) => out.push({ id: p.newId(), workspace_id: m.workspace_id, webhook_id: m.id, payload, status });
    const initial = p.initial.has(m.id) && m.initial_sync === 'running';
    if (initial) {
      const pages = chunks(live, size);
      if (p.lastPage && pages.length === 0) pages.push([]);
      const type = m.event_types[0] ?? 'record:created';
      pages.forEach((records, i) =>
        push({ type, unified_type: p.lastPage && i === pages.length - 1 ? 'INITIAL-COMPLETE' : 'INITIAL-PARTIAL', records }),
      );
    }
    // During an initial sync a deletion is news too: a record the webhook got in an earlier
    // page and the source deleted since is no longer live, so only a `deleted` page tells it
    // (its tombstone is then known, and no later run sends it). Only deletions made during the
    // run: one from before it concerns a record the webhook never got.
    const since = p.runStartedAt.getTime();
    for (const kind of initial ? (['deleted'] as const) : KINDS) {
      const type = `record:${kind}`;
      if (m.event_types.length > 0 && !m.event_types.includes(type)) continue;
      const records = p.changes.filter((c) => c.kind === kind && (!initial || Date.parse(c.record.updated_at) >= since)).map((c) => c.record);
      for (const page of chunks(records, size)) push({ type, unified_type: 'VIRTUAL', records: page });
    }
  }
  return out;
}

/** Keeps records whose fields equal the filters (a source that ignores filters sends no strays). */
export function matchesFilters(record: SourceRecord, filters: Readonly<Record<string, string>>): boolean {
  for (const [k, v] of Object.entries(filters)) {
    const actual = (record as Record<string, unknown>)[k];
    if (actual === undefined || actual === null) continue;
    if (exactString(actual) !== v) return false;
  }
  return true;
}
