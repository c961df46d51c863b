import { exactString, type SourceRecord } from '@hookpost/contract';
import { makeId, OBJECT_TYPE_NAMES, OBJECT_TYPES, pick, seededRng, type Fields, type ObjectType, type Rng, type SeedContext } from './objects.js';

/** One record as the provider keeps it: timestamps in epoch ms. */
export interface StoredRecord {
  id: string;
  createdMs: number;
  updatedMs: number;
  deletedMs: number | null;
  fields: Fields;
}

/** A position in the (updated_at, id) order. */
export interface OrderKey {
  updatedMs: number;
  id: string;
}

export function compareKeys(a: OrderKey, b: OrderKey): number {
  if (a.updatedMs !== b.updatedMs) return a.updatedMs - b.updatedMs;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** First index whose record sorts after `key` (strict) or at/after it. */
function lowerBound(sorted: readonly StoredRecord[], key: OrderKey, strict: boolean): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const c = compareKeys(sorted[mid] as StoredRecord, key);
    if (c < 0 || (strict && c === 0)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

const FIXED_KEYS = new Set(['id', 'created_at', 'updated_at', 'deleted_at']);

/** Drops the four fixed keys from caller-supplied fields. */
export function freeFields(body: Record<string, unknown>): Fields {
  return Object.fromEntries(Object.entries(body).filter(([k]) => !FIXED_KEYS.has(k)));
}

/** The records of one object type in one account, kept sorted by (updated_at, id). */
export class ObjectStore {
  readonly byId = new Map<string, StoredRecord>();
  /** Sorted by (updatedMs, id). Every change is newer than everything in the account, so it moves to the end. */
  readonly sorted: StoredRecord[] = [];
  live = 0;

  constructor(readonly type: ObjectType) {}

  /** Index-based listing: records after `after` (strict) and at/after `gteMs`, matching `filter`. */
  list(opts: { gteMs?: number | undefined; after?: OrderKey | undefined; limit: number; filter: Record<string, string> }): {
    records: StoredRecord[];
    more: boolean;
  } {
    let start = 0;
    if (opts.gteMs !== undefined) start = lowerBound(this.sorted, { updatedMs: opts.gteMs, id: '' }, false);
    if (opts.after) start = Math.max(start, lowerBound(this.sorted, opts.after, true));
    const filters = Object.entries(opts.filter);
    const matches = (r: StoredRecord) => filters.every(([name, value]) => fieldEquals(r, name, value));
    const records: StoredRecord[] = [];
    let i = start;
    for (; i < this.sorted.length && records.length < opts.limit; i++) {
      const r = this.sorted[i] as StoredRecord;
      if (matches(r)) records.push(r);
    }
    // Is there another match after the page? (Look ahead so the last page carries next_cursor: null.)
    let more = false;
    for (; i < this.sorted.length; i++) {
      if (matches(this.sorted[i] as StoredRecord)) {
        more = true;
        break;
      }
    }
    return { records, more };
  }

  insert(r: StoredRecord): void {
    this.byId.set(r.id, r);
    if (r.deletedMs === null) this.live++;
    const last = this.sorted.at(-1);
    if (!last || compareKeys(last, r) < 0) this.sorted.push(r);
    else this.sorted.splice(lowerBound(this.sorted, r, false), 0, r);
  }

  /** Moves `r` to `updatedMs` (which must be newer than everything in the store). */
  bump(r: StoredRecord, updatedMs: number): void {
    const idx = lowerBound(this.sorted, r, false);
    if (this.sorted[idx] !== r) throw new Error(`record ${r.id} not where expected`);
    this.sorted.splice(idx, 1);
    r.updatedMs = updatedMs;
    this.insert(r);
    if (r.deletedMs === null) this.live--; // insert counted it again
  }

  /** A random live record (by rejection sampling, then a scan), or undefined. */
  randomLive(rng: Rng): StoredRecord | undefined {
    if (this.live === 0) return undefined;
    for (let i = 0; i < 16; i++) {
      const r = this.sorted[Math.floor(rng() * this.sorted.length)];
      if (r && r.deletedMs === null) return r;
    }
    const alive = this.sorted.filter((r) => r.deletedMs === null);
    return alive.length ? pick(rng, alive) : undefined;
  }
}

function fieldEquals(r: StoredRecord, name: string, value: string): boolean {
  const v = name === 'id' ? r.id : r.fields[name];
  if (typeof v === 'string') return exactString(v) === value;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v) === value;
  return false;
}

const iso = (ms: number) => new Date(ms).toISOString();

/** The protocol's view of a record, optionally projected to `fields` (the four fixed ones always kept). */
export function toSourceRecord(r: StoredRecord, type: ObjectType, fields?: ReadonlySet<string>): SourceRecord {
  const out: SourceRecord = { id: r.id, created_at: iso(r.createdMs), updated_at: iso(r.updatedMs), deleted_at: r.deletedMs === null ? null : iso(r.deletedMs) };
  for (const [k, v] of Object.entries(r.fields)) if (!fields || fields.has(k)) out[k] = v;
  // The vendor shape is derived from the fields unless the record carries its own.
  if (r.fields.raw === undefined && (!fields || fields.has('raw'))) out.raw = type.raw(r.fields);
  return out;
}

export type ChangeKind = 'creates' | 'updates' | 'deletes';
/** Generated changes per account per minute. */
export interface GeneratorRates {
  creates_per_min: number;
  updates_per_min: number;
  deletes_per_min: number;
}

const DAY_MS = 86_400_000;
const SEED_SPAN_MS = 30 * DAY_MS;

export interface StoreOptions {
  seed: string;
  /** Seeded records per object type per account. */
  records: number;
  /** Seeded timestamps fall in the 30 days before this instant (epoch ms). */
  seedAnchorMs: number;
  now: () => number;
}

/** One bearer token's data. */
export class Account {
  readonly stores = new Map<string, ObjectStore>();
  /** The newest updated_at assigned in this account (every change is strictly newer). */
  lastMs = 0;
  readonly genRng: Rng;
  /** Generator carry-over (fractional changes owed), started at a random phase so accounts spread out. */
  readonly carry: Record<ChangeKind, number>;
  readonly ctx: SeedContext;
  /** The PRNG `ctx` draws from: the object type's seeding PRNG while seeding, else the generator's. */
  private rng: Rng;

  constructor(
    readonly token: string,
    private readonly options: StoreOptions,
    records = options.records,
  ) {
    this.genRng = seededRng(`${options.seed}\u0000${token}\u0000generator`);
    this.rng = this.genRng;
    this.carry = { creates: this.genRng(), updates: this.genRng(), deletes: this.genRng() };
    const owners = Array.from({ length: 5 }, (_, i) => `usr_${String(i + 1).padStart(3, '0')}`);
    const seeding = new Map<string, string[]>();
    this.ctx = {
      owners,
      randomId: (type) => {
        const ids = seeding.get(type);
        if (ids) return ids.length ? pick(this.rng, ids) : null;
        const r = this.stores.get(type)?.randomLive(this.rng);
        return r ? r.id : null;
      },
    };
    for (const name of OBJECT_TYPE_NAMES) {
      const type = OBJECT_TYPES[name] as ObjectType;
      const store = new ObjectStore(type);
      this.stores.set(name, store);
      const rng = seededRng(`${options.seed}\u0000${token}\u0000${name}`);
      this.rng = rng;
      const ids: string[] = [];
      seeding.set(name, ids);
      const batch: StoredRecord[] = [];
      for (let i = 0; i < records; i++) {
        let id = makeId(rng, type.idPrefix);
        while (store.byId.has(id)) id = makeId(rng, type.idPrefix);
        const createdMs = options.seedAnchorMs - 1 - Math.floor(rng() * SEED_SPAN_MS);
        const updatedMs = createdMs + Math.floor(rng() * (options.seedAnchorMs - createdMs));
        const r: StoredRecord = { id, createdMs, updatedMs, deletedMs: null, fields: type.make(rng, this.ctx) };
        store.byId.set(id, r);
        batch.push(r);
        ids.push(id);
        if (updatedMs > this.lastMs) this.lastMs = updatedMs;
      }
      batch.sort(compareKeys);
      store.sorted.push(...batch);
      store.live = batch.length;
    }
    seeding.clear();
    this.rng = this.genRng;
  }

  store(type: string): ObjectStore | undefined {
    return this.stores.get(type);
  }

  /** The timestamp for a change now: the provider clock, at least 1 ms after the last one assigned. */
  nextMs(): number {
    const t = Math.max(this.options.now(), this.lastMs + 1);
    this.lastMs = t;
    return t;
  }

  create(store: ObjectStore, fields: Fields, id?: string): StoredRecord {
    let rid = id;
    if (rid === undefined) {
      rid = makeId(this.genRng, store.type.idPrefix);
      while (store.byId.has(rid)) rid = makeId(this.genRng, store.type.idPrefix);
    }
    const t = this.nextMs();
    const r: StoredRecord = { id: rid, createdMs: t, updatedMs: t, deletedMs: null, fields };
    store.insert(r);
    return r;
  }

  update(store: ObjectStore, r: StoredRecord, merge: Fields): StoredRecord {
    r.fields = { ...r.fields, ...merge };
    store.bump(r, this.nextMs());
    return r;
  }

  touch(store: ObjectStore, r: StoredRecord): StoredRecord {
    store.bump(r, this.nextMs());
    return r;
  }

  remove(store: ObjectStore, r: StoredRecord): StoredRecord {
    if (r.deletedMs !== null) return r;
    const t = this.nextMs();
    r.deletedMs = t;
    store.live--;
    store.bump(r, t);
    return r;
  }

  /** Applies one generated change of `kind` to a random object type. False when there was nothing to change. */
  generate(kind: ChangeKind): boolean {
    const rng = this.genRng;
    const first = Math.floor(rng() * OBJECT_TYPE_NAMES.length);
    for (let k = 0; k < OBJECT_TYPE_NAMES.length; k++) {
      const store = this.stores.get(OBJECT_TYPE_NAMES[(first + k) % OBJECT_TYPE_NAMES.length] as string) as ObjectStore;
      if (kind === 'creates') {
        this.create(store, store.type.make(rng, this.ctx));
        return true;
      }
      const r = store.randomLive(rng);
      if (!r) continue;
      if (kind === 'updates') this.update(store, r, store.type.mutate(rng, r.fields, this.ctx));
      else this.remove(store, r);
      return true;
    }
    return false;
  }
}

/** Every account, created lazily per bearer token. */
export class ProviderStore {
  readonly accounts = new Map<string, Account>();
  readonly generated: Record<ChangeKind, number> = { creates: 0, updates: 0, deletes: 0 };

  constructor(readonly options: StoreOptions) {}

  account(token: string): Account {
    let a = this.accounts.get(token);
    if (!a) {
      a = new Account(token, this.options);
      this.accounts.set(token, a);
    }
    return a;
  }

  /** (Re)creates an account with `records` seeded records per object type. */
  recreate(token: string, records: number): Account {
    const a = new Account(token, this.options, records);
    this.accounts.set(token, a);
    return a;
  }

  reset(): void {
    this.accounts.clear();
    for (const k of Object.keys(this.generated) as ChangeKind[]) this.generated[k] = 0;
  }

  /** Applies `dtMs` worth of generated changes at `rates` (per account per minute) to every account. */
  runGenerator(rates: GeneratorRates, dtMs: number): void {
    const kinds: [ChangeKind, number][] = [
      ['creates', rates.creates_per_min],
      ['updates', rates.updates_per_min],
      ['deletes', rates.deletes_per_min],
    ];
    for (const account of this.accounts.values()) {
      for (const [kind, rate] of kinds) {
        if (!(rate > 0)) continue;
        account.carry[kind] += (rate * dtMs) / 60_000;
        let n = Math.floor(account.carry[kind]);
        account.carry[kind] -= n;
        while (n-- > 0) if (account.generate(kind)) this.generated[kind]++;
      }
    }
  }
}
