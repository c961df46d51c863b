import { listenHttp, readBodyCapped } from '@hookpost/runtime';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { SOURCE_PAGE_DEFAULT, SourceListQuery, sourceListFilters, stringifyExact, type SourceListPage, type SourceRecord } from '@hookpost/contract';
import { z } from 'zod';
import { seededRng } from './objects.js';
import { freeFields, ProviderStore, toSourceRecord, type Account, type GeneratorRates, type ObjectStore, type OrderKey, type StoredRecord } from './store.js';

export { OBJECT_TYPE_NAMES, OBJECT_TYPES } from './objects.js';
export type { GeneratorRates } from './store.js';

/** How list requests answer: for one account (token) or all. */
export interface ProviderBehaviour {
  /** Status to answer with (default 200; with `failure_rate`, the failure status, default 500). */
  status?: number;
  /** Delay before answering, in ms. */
  latency_ms?: number;
  /** Fraction (0–1) of requests answered with `status` (default 500); the rest answer normally. */
  failure_rate?: number;
  /** Retry-After header value sent with non-2xx answers. */
  retry_after?: string;
  /** Apply to this many requests only, then answer normally again. */
  times?: number;
  /**
   * The last page's `next_cursor` leads back to the second page instead of being null: a
   * source whose cursors cycle, so that following them never ends.
   */
  cursor_loop?: boolean;
}

/** One list request the provider received. */
export interface LoggedRequest {
  at: string;
  method: string;
  path: string;
  object_type: string | null;
  token: string | null;
  query: { updated_gte?: string; cursor?: string; limit?: string; fields?: string; filter: Record<string, string> };
  status: number;
  duration_ms: number;
  /** Records returned (200 only). */
  count?: number;
}

export interface RequestStats {
  requests: number;
  by_status: Record<string, number>;
  in_flight: number;
  /** Most list requests this account had in flight at once. */
  max_concurrent: number;
}

export interface ProviderStats {
  requests: number;
  by_status: Record<string, number>;
  in_flight: number;
  /** Most list requests any one account had in flight at once. */
  max_concurrent_per_account: number;
  accounts: number;
  generated: { creates: number; updates: number; deletes: number };
}

export interface ProviderOptions {
  /** Seed for the seeded data (with each token). Default 'hookpost'. */
  seed?: string;
  /** Seeded records per object type per account. Default 25. */
  records?: number;
  /** Generated changes per account per minute. Default none. */
  rates?: Partial<GeneratorRates>;
  /** Seeded timestamps lie in the 30 days before this instant (epoch ms). Default: start of the current UTC day. */
  seedAnchorMs?: number;
  /** The provider clock (epoch ms). Default Date.now. */
  now?: () => number;
  /** How often the generator runs, ms. Default 250. */
  generatorTickMs?: number;
  /** List requests kept in the request log. Default 10,000. */
  requestLogCapacity?: number;
  log?: (msg: string, fields?: Record<string, unknown>) => void;
}

type RecordResult = { ok: true; record: SourceRecord } | { ok: false; status: number; error: string; message: string };

export interface MockProvider {
  server: Server;
  url: string;
  store: ProviderStore;
  /** Every record of an account's object type, tombstones included, in (updated_at, id) order. */
  records(token: string, objectType: string): SourceRecord[];
  createRecord(token: string, objectType: string, fields: Record<string, unknown>): RecordResult;
  updateRecord(token: string, objectType: string, id: string, fields: Record<string, unknown>): RecordResult;
  touchRecord(token: string, objectType: string, id: string): RecordResult;
  deleteRecord(token: string, objectType: string, id: string): RecordResult;
  /** Sets how list requests of `token` (or all, when undefined) answer; `undefined` behaviour clears it. */
  setBehaviour(token: string | undefined, behaviour: ProviderBehaviour | undefined): void;
  clearBehaviours(): void;
  setGeneratorRates(rates: Partial<GeneratorRates>): GeneratorRates;
  generatorRates(): GeneratorRates;
  requests(filter?: { token?: string; object_type?: string }): LoggedRequest[];
  stats(): ProviderStats;
  accountStats(token: string): RequestStats;
  /** Drops every account, behaviour, logged request and statistic. */
  reset(): void;
  close(): Promise<void>;
}

const BehaviourBody = z
  .object({
    token: z.string().min(1).optional(),
    status: z.number().int().min(100).max(599).optional(),
    latency_ms: z.number().int().min(0).max(600_000).optional(),
    failure_rate: z.number().min(0).max(1).optional(),
    retry_after: z.string().min(1).max(200).optional(),
    times: z.number().int().min(0).optional(),
    cursor_loop: z.boolean().optional(),
  })
  .strict();

const RatesBody = z
  .object({
    creates_per_min: z.number().min(0).max(1_000_000).optional(),
    updates_per_min: z.number().min(0).max(1_000_000).optional(),
    deletes_per_min: z.number().min(0).max(1_000_000).optional(),
  })
  .strict();

const AccountBody = z.object({ records: z.number().int().min(0).max(1_000_000).optional() }).strict();

const Cursor = z.object({ u: z.number().int(), i: z.string() });

export function encodeCursor(key: OrderKey): string {
  return Buffer.from(JSON.stringify({ u: key.updatedMs, i: key.id })).toString('base64url');
}

export function decodeCursor(cursor: string): OrderKey | null {
  try {
    const parsed = Cursor.safeParse(JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')));
    return parsed.success ? { updatedMs: parsed.data.u, id: parsed.data.i } : null;
  } catch {
    return null;
  }
}

/** An ISO date-time to epoch ms, rounded up when it has sub-millisecond digits (so "at or after" stays exact). */
function isoToMsCeil(v: string): number {
  const ms = Date.parse(v);
  const frac = /\.(\d+)/.exec(v)?.[1] ?? '';
  return frac.length > 3 && /[1-9]/.test(frac.slice(3)) ? Math.floor(ms) + 1 : ms;
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  // Field values parsed with parseExact (a 64-bit id, in a test) go out as the numbers they hold.
  const text = stringifyExact(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)), ...headers });
  res.end(text);
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

async function readJson(req: IncomingMessage, max = 1024 * 1024): Promise<unknown> {
  const raw = await readBodyCapped(req, max);
  if (raw === null) throw new HttpError(413, 'payload_too_large', 'body too large');
  const text = raw.toString('utf8').trim();
  if (!text) return {};
  try {
    return JSON.parse(text);
  } catch {
    throw new HttpError(400, 'invalid_json', 'body is not JSON');
  }
}

function parseBody<T>(schema: z.ZodType<T>, body: unknown): T {
  const r = schema.safeParse(body);
  if (!r.success) throw new HttpError(400, 'invalid_body', r.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; '));
  return r.data;
}

function jsonObject(body: unknown): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HttpError(400, 'invalid_body', 'body must be a JSON object');
  return body as Record<string, unknown>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function bearer(header: string | undefined): string | null {
  const m = /^Bearer +(\S.*)$/i.exec(header ?? '');
  const token = m?.[1]?.trim();
  return token ? token : null;
}

function startOfUtcDay(ms: number): number {
  return ms - (ms % 86_400_000);
}

/**
 * A fake third-party API implementing Hookpost's source list protocol
 * (`GET /objects/{object_type}`, see @hookpost/contract `sourceRoutes`). Every bearer
 * token is an account with its own deterministic seeded data; `/_control/*` endpoints
 * change records, shape answers (status, latency, Retry-After) and report what arrived.
 */
export function createProvider(options: ProviderOptions = {}): MockProvider {
  const now = options.now ?? (() => Date.now());
  const store = new ProviderStore({
    seed: options.seed ?? 'hookpost',
    records: options.records ?? 25,
    seedAnchorMs: options.seedAnchorMs ?? startOfUtcDay(now()),
    now,
  });
  const log = options.log ?? (() => undefined);
  const capacity = options.requestLogCapacity ?? 10_000;
  const tickMs = options.generatorTickMs ?? 250;
  const behaviours = new Map<string, ProviderBehaviour>();
  const decisionRng = seededRng(`${store.options.seed}\u0000behaviour`);

  // Request log: a ring buffer.
  let ring: LoggedRequest[] = [];
  let ringHead = 0;
  const logRequest = (r: LoggedRequest) => {
    if (ring.length < capacity) ring.push(r);
    else {
      ring[ringHead] = r;
      ringHead = (ringHead + 1) % capacity;
    }
  };
  const orderedLog = () => (ringHead === 0 ? ring : [...ring.slice(ringHead), ...ring.slice(0, ringHead)]);

  // Statistics.
  const newStats = (): RequestStats => ({ requests: 0, by_status: {}, in_flight: 0, max_concurrent: 0 });
  let totals = newStats();
  let perAccount = new Map<string, RequestStats>();
  let maxConcurrentPerAccount = 0;
  const statsOf = (token: string) => {
    let s = perAccount.get(token);
    if (!s) {
      s = newStats();
      perAccount.set(token, s);
    }
    return s;
  };

  // Generator.
  const rates: GeneratorRates = { creates_per_min: 0, updates_per_min: 0, deletes_per_min: 0, ...options.rates };
  let timer: NodeJS.Timeout | undefined;
  let lastTick = 0;
  const tick = () => {
    const t = Date.now();
    const dt = Math.min(t - lastTick, 10_000);
    lastTick = t;
    try {
      store.runGenerator(rates, dt);
    } catch (err) {
      log('generator error', { err: String(err) });
    }
  };
  const syncTimer = () => {
    const on = rates.creates_per_min > 0 || rates.updates_per_min > 0 || rates.deletes_per_min > 0;
    if (on && !timer) {
      lastTick = Date.now();
      timer = setInterval(tick, tickMs);
      timer.unref();
    } else if (!on && timer) {
      clearInterval(timer);
      timer = undefined;
    }
  };
  syncTimer();

  const decide = (token: string): { status: number; latency: number; retryAfter?: string; cursorLoop?: boolean } => {
    const key = behaviours.has(token) ? token : behaviours.has('*') ? '*' : undefined;
    const b = key === undefined ? undefined : behaviours.get(key);
    if (!b || key === undefined) return { status: 200, latency: 0 };
    if (b.times !== undefined) {
      if (b.times <= 0) {
        behaviours.delete(key);
        return decide(token);
      }
      b.times--;
      if (b.times <= 0) behaviours.delete(key);
    }
    const status = b.failure_rate !== undefined ? (decisionRng() < b.failure_rate ? (b.status ?? 500) : 200) : (b.status ?? 200);
    const failing = status < 200 || status >= 300;
    return { status, latency: b.latency_ms ?? 0, ...(b.retry_after && failing ? { retryAfter: b.retry_after } : {}), ...(b.cursor_loop ? { cursorLoop: true } : {}) };
  };

  const objectStore = (account: Account, type: string): ObjectStore => {
    const s = account.store(type);
    if (!s) throw new HttpError(404, 'not_found', `unknown object type ${type}`);
    return s;
  };
  const found = (s: ObjectStore, id: string): StoredRecord => {
    const r = s.byId.get(id);
    if (!r) throw new HttpError(404, 'not_found', `no record ${id}`);
    return r;
  };
  const live = (r: StoredRecord): StoredRecord => {
    if (r.deletedMs !== null) throw new HttpError(409, 'deleted', `record ${r.id} is deleted`);
    return r;
  };
  const guarded = (fn: () => { s: ObjectStore; r: StoredRecord }): RecordResult => {
    try {
      const { s, r } = fn();
      return { ok: true, record: toSourceRecord(r, s.type) };
    } catch (err) {
      if (err instanceof HttpError) return { ok: false, status: err.status, error: err.code, message: err.message };
      throw err;
    }
  };

  const ops = {
    create: (token: string, type: string, body: Record<string, unknown>) =>
      guarded(() => {
        const account = store.account(token);
        const s = objectStore(account, type);
        const id = body.id;
        if (id !== undefined && (typeof id !== 'string' || id.length === 0 || id.length > 500)) throw new HttpError(400, 'invalid_body', 'id: must be a non-empty string');
        if (typeof id === 'string' && s.byId.has(id)) throw new HttpError(409, 'conflict', `record ${id} exists`);
        return { s, r: account.create(s, freeFields(body), id) };
      }),
    update: (token: string, type: string, id: string, body: Record<string, unknown>) =>
      guarded(() => {
        const account = store.account(token);
        const s = objectStore(account, type);
        return { s, r: account.update(s, live(found(s, id)), freeFields(body)) };
      }),
    touch: (token: string, type: string, id: string) =>
      guarded(() => {
        const account = store.account(token);
        const s = objectStore(account, type);
        return { s, r: account.touch(s, live(found(s, id))) };
      }),
    remove: (token: string, type: string, id: string) =>
      guarded(() => {
        const account = store.account(token);
        const s = objectStore(account, type);
        return { s, r: account.remove(s, found(s, id)) };
      }),
  };

  const listRecords = (token: string, type: string): SourceRecord[] => {
    const s = objectStore(store.account(token), type);
    return s.sorted.map((r) => toSourceRecord(r, s.type));
  };

  const requests = (filter: { token?: string; object_type?: string } = {}) =>
    orderedLog().filter((r) => (filter.token === undefined || r.token === filter.token) && (filter.object_type === undefined || r.object_type === filter.object_type));

  const stats = (): ProviderStats => ({
    requests: totals.requests,
    by_status: { ...totals.by_status },
    in_flight: totals.in_flight,
    max_concurrent_per_account: maxConcurrentPerAccount,
    accounts: store.accounts.size,
    generated: { ...store.generated },
  });
  const accountStats = (token: string): RequestStats => {
    const s = perAccount.get(token) ?? newStats();
    return { ...s, by_status: { ...s.by_status } };
  };

  const reset = () => {
    store.reset();
    behaviours.clear();
    ring = [];
    ringHead = 0;
    totals = newStats();
    perAccount = new Map();
    maxConcurrentPerAccount = 0;
  };

  /** `GET /objects/{type}`: the source list protocol. */
  const handleList = async (req: IncomingMessage, res: ServerResponse, url: URL, type: string) => {
    const started = Date.now();
    const sp = url.searchParams;
    const filter = sourceListFilters(sp);
    const rawQuery: LoggedRequest['query'] = { filter };
    for (const k of ['updated_gte', 'cursor', 'limit', 'fields'] as const) {
      const v = sp.get(k);
      if (v !== null) rawQuery[k] = v;
    }
    const token = bearer(req.headers.authorization);
    const stat = token === null ? undefined : statsOf(token);
    totals.in_flight++;
    if (stat) {
      stat.in_flight++;
      stat.max_concurrent = Math.max(stat.max_concurrent, stat.in_flight);
      maxConcurrentPerAccount = Math.max(maxConcurrentPerAccount, stat.max_concurrent);
    }
    let status = 500;
    let count: number | undefined;
    const answer = (s: number, body: unknown, headers: Record<string, string> = {}) => {
      status = s;
      json(res, s, body, headers);
    };
    try {
      if (token === null) return answer(401, { error: 'unauthorized', message: 'send Authorization: Bearer <token>' }, { 'www-authenticate': 'Bearer' });
      const account = store.account(token);
      const s = account.store(type);
      if (!s) return answer(404, { error: 'not_found', message: `unknown object type ${type}` });
      const parsed = SourceListQuery.safeParse({ ...rawQuery, filter });
      if (!parsed.success) return answer(400, { error: 'invalid_query', message: parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ') });
      const q = parsed.data;
      const unknownFilter = Object.keys(q.filter ?? {}).find((name) => !s.type.filterable.includes(name));
      if (unknownFilter !== undefined) return answer(400, { error: 'unsupported_filter', message: `cannot filter ${type} by ${unknownFilter}; filterable: ${s.type.filterable.join(', ')}` });
      let after: OrderKey | undefined;
      if (q.cursor !== undefined) {
        const c = decodeCursor(q.cursor);
        if (!c) return answer(400, { error: 'invalid_cursor', message: 'cursor is not one this source issued' });
        after = c;
      }

      const d = decide(token);
      if (d.latency > 0) await sleep(d.latency);
      if (d.status < 200 || d.status >= 300) {
        const error = d.status === 401 || d.status === 403 ? 'unauthorized' : d.status === 429 ? 'rate_limited' : 'simulated_failure';
        return answer(d.status, { error, message: `mock provider behaviour: ${d.status}` }, d.retryAfter ? { 'retry-after': d.retryAfter } : {});
      }

      const fields = q.fields === undefined ? undefined : new Set(q.fields.split(',').map((f) => f.trim()).filter(Boolean));
      const listing = { gteMs: q.updated_gte === undefined ? undefined : isoToMsCeil(q.updated_gte), limit: q.limit ?? SOURCE_PAGE_DEFAULT, filter: q.filter ?? {} };
      const { records, more } = s.list({ ...listing, after });
      const last = records.at(-1);
      let next = more && last ? encodeCursor(last) : null;
      if (next === null && d.cursorLoop && after !== undefined) {
        const firstPageEnd = s.list({ ...listing, after: undefined }).records.at(-1);
        if (firstPageEnd) next = encodeCursor(firstPageEnd);
      }
      const page: SourceListPage = { data: records.map((r) => toSourceRecord(r, s.type, fields)), next_cursor: next };
      count = records.length;
      answer(d.status, page);
    } finally {
      totals.in_flight--;
      totals.requests++;
      totals.by_status[status] = (totals.by_status[status] ?? 0) + 1;
      if (stat) {
        stat.in_flight--;
        stat.requests++;
        stat.by_status[status] = (stat.by_status[status] ?? 0) + 1;
      }
      logRequest({
        at: new Date(started).toISOString(),
        method: req.method ?? 'GET',
        path: url.pathname,
        object_type: type,
        token,
        query: rawQuery,
        status,
        duration_ms: Date.now() - started,
        ...(count !== undefined ? { count } : {}),
      });
    }
  };

  const sendRecord = (res: ServerResponse, r: RecordResult, okStatus = 200) => {
    if (r.ok) json(res, okStatus, r.record);
    else json(res, r.status, { error: r.error, message: r.message });
  };

  const handleControl = async (req: IncomingMessage, res: ServerResponse, url: URL, parts: string[]) => {
    const method = req.method ?? 'GET';
    const [, what, token, objects, type, recordsSeg, id, touch] = parts;
    if (what === 'generator' && parts.length === 2) {
      if (method === 'POST') Object.assign(rates, parseBody(RatesBody, await readJson(req)));
      else if (method !== 'GET') throw new HttpError(405, 'method_not_allowed', 'GET or POST');
      syncTimer();
      return json(res, 200, { ...rates, generated: { ...store.generated } });
    }
    if (what === 'behaviour' && parts.length === 2) {
      if (method === 'POST') {
        const { token: t, ...b } = parseBody(BehaviourBody, await readJson(req));
        behaviours.set(t ?? '*', b);
      } else if (method === 'DELETE') behaviours.clear();
      else if (method !== 'GET') throw new HttpError(405, 'method_not_allowed', 'GET, POST or DELETE');
      return json(res, 200, { behaviours: Object.fromEntries(behaviours) });
    }
    if (what === 'requests' && parts.length === 2 && method === 'GET') {
      const q = url.searchParams;
      const list = requests({ ...(q.get('token') !== null ? { token: q.get('token') as string } : {}), ...(q.get('object_type') !== null ? { object_type: q.get('object_type') as string } : {}) });
      const limit = Math.min(Number(q.get('limit') ?? capacity) || capacity, capacity);
      return json(res, 200, { count: list.length, requests: list.slice(-limit) });
    }
    if (what === 'stats' && parts.length === 2 && method === 'GET') {
      const t = url.searchParams.get('token');
      return json(res, 200, t !== null ? { ...stats(), account: { token: t, ...accountStats(t) } } : stats());
    }
    if (what === 'reset' && parts.length === 2 && method === 'POST') {
      reset();
      return json(res, 200, { reset: true });
    }
    if (what === 'accounts' && token !== undefined) {
      if (parts.length === 3 && method === 'PUT') {
        const body = parseBody(AccountBody, await readJson(req));
        const a = store.recreate(token, body.records ?? store.options.records);
        return json(res, 200, { token, objects: Object.fromEntries([...a.stores].map(([k, s]) => [k, s.sorted.length])) });
      }
      if (objects === 'objects' && type !== undefined && recordsSeg === 'records') {
        if (parts.length === 6 && method === 'GET') return json(res, 200, { data: listRecords(token, type) });
        if (parts.length === 6 && method === 'POST') return sendRecord(res, ops.create(token, type, jsonObject(await readJson(req))), 201);
        if (parts.length === 7 && id !== undefined && method === 'PATCH') return sendRecord(res, ops.update(token, type, id, jsonObject(await readJson(req))));
        if (parts.length === 7 && id !== undefined && method === 'DELETE') return sendRecord(res, ops.remove(token, type, id));
        if (parts.length === 8 && id !== undefined && touch === 'touch' && (method === 'PUT' || method === 'POST')) return sendRecord(res, ops.touch(token, type, id));
      }
    }
    throw new HttpError(404, 'not_found', `no control route ${method} ${url.pathname}`);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://x');
    let parts: string[];
    try {
      parts = url.pathname.split('/').filter(Boolean).map((p) => decodeURIComponent(p));
    } catch {
      return json(res, 400, { error: 'bad_request', message: 'malformed path' });
    }
    if (parts[0] === 'objects' && parts.length === 2) {
      if (req.method !== 'GET') return json(res, 405, { error: 'method_not_allowed', message: 'list with GET' });
      return handleList(req, res, url, parts[1] as string);
    }
    if (parts[0] === 'healthz' && parts.length === 1) return json(res, 200, { status: 'ok' });
    if (parts[0] === '_control') {
      try {
        return await handleControl(req, res, url, parts);
      } catch (err) {
        if (err instanceof HttpError) return json(res, err.status, { error: err.code, message: err.message });
        throw err;
      }
    }
    return json(res, 404, { error: 'not_found', message: `no route ${req.method} ${url.pathname}` });
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      log('provider error', { err: String(err) });
      if (!res.headersSent) json(res, 500, { error: 'internal_error', message: 'provider error' });
    });
  });
  server.keepAliveTimeout = 65_000;

  return {
    server,
    url: '',
    store,
    records: listRecords,
    createRecord: ops.create,
    updateRecord: ops.update,
    touchRecord: ops.touch,
    deleteRecord: ops.remove,
    setBehaviour: (token, behaviour) => {
      if (behaviour) behaviours.set(token ?? '*', { ...behaviour });
      else behaviours.delete(token ?? '*');
    },
    clearBehaviours: () => behaviours.clear(),
    setGeneratorRates: (r) => {
      Object.assign(rates, parseBody(RatesBody, r));
      syncTimer();
      return { ...rates };
    },
    generatorRates: () => ({ ...rates }),
    requests,
    stats,
    accountStats,
    reset,
    close: () =>
      new Promise<void>((resolve) => {
        if (timer) clearInterval(timer);
        timer = undefined;
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** Starts a provider listening on host:port (port 0: any free port). */
export async function startProvider(host: string, port: number, options: ProviderOptions = {}): Promise<MockProvider> {
  const provider = createProvider(options);
  provider.url = await listenHttp(provider.server, host, port);
  return provider;
}
