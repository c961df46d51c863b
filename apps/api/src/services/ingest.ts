import { createHash } from 'node:crypto';
import { stringifyExact, type EventAccepted, type EventIn } from '@hookpost/contract';
import { events as eventsRepo, isConnectionError, newId, type Db, type NewEvent, type Scope } from '@hookpost/db';
import type { Kysely } from 'kysely';
import type { Database } from '@hookpost/db';
import type { Logger } from '@hookpost/runtime';
import { ApiError } from '../http/errors.js';

export interface IngestRequest {
  scope: Scope;
  events: EventIn[];
  /** POST /v1/events (one event, errors at `body.*`) rather than /batch (`body.events.N.*`). */
  single: boolean;
  idempotencyKey?: string;
  /** The request body's size: a group closes at `maxBytes` as at `maxEvents`. */
  bodyBytes?: number;
}

/**
 * Bytes of request bodies one group takes (it always takes one request). The group goes to
 * Postgres as one JSON document, which jsonb caps at 256 MB: ~280 concurrent 1 MB events
 * failed as a group and were committed one by one (5.8 s, against 2.2 s for 100 that grouped).
 */
export const GROUP_MAX_BYTES = 32 * 1024 * 1024;

export interface IngestAnswer {
  status: number;
  body: unknown;
}

interface Pending {
  request: IngestRequest;
  /** What a repeat of the idempotency key must match; only requests with a key need it. */
  requestHash: Buffer;
  resolve: (a: IngestAnswer) => void;
  reject: (e: unknown) => void;
}

/**
 * Accepts events. Concurrent requests are group-committed: requests that arrive while
 * `maxInFlight` commits are already running wait and then share one transaction
 * (events, fan-out rows, idempotency records); each gets its 202 only after that
 * transaction commits. A request arriving when a commit slot is free starts one at
 * once (after the current I/O turn, which gathers requests read together), so a lone
 * request waits for nothing and a busy API batches by itself. `windowMs` > 0 adds a
 * fixed wait before each group. No in-memory queue stands between acceptance and
 * durability: a request is answered after its rows are in Postgres, never before.
 */
export class EventIngestor {
  private batch: Pending[] = [];
  private batchEvents = 0;
  private batchBytes = 0;
  private scheduled = false;
  private inFlight = 0;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly logger: Logger,
    private readonly options: { windowMs: number; maxEvents: number; maxInFlight: number; maxBytes?: number },
  ) {}

  private get maxBytes(): number {
    return this.options.maxBytes ?? GROUP_MAX_BYTES;
  }

  submit(given: IngestRequest): Promise<IngestAnswer> {
    // Ids as the database writes them (a UUID in capitals is the same id): compared as text,
    // the caller's own connection or environment in capitals was "not in this workspace".
    const request = { ...given, events: given.events.map(lowerCaseIds) };
    // Only a keyed request is ever compared (serialising a 1000-event batch to hash it cost
    // ~6 % of the API's CPU in bench (a), for requests that never needed it).
    const requestHash = request.idempotencyKey === undefined ? NO_HASH : hashRequest(request);
    return new Promise<IngestAnswer>((resolve, reject) => {
      this.batch.push({ request, requestHash, resolve, reject });
      this.batchEvents += request.events.length;
      this.batchBytes += request.bodyBytes ?? 0;
      const full = this.batchEvents >= this.options.maxEvents || this.batchBytes >= this.maxBytes;
      if (full && this.inFlight < this.options.maxInFlight) this.flush();
      else this.schedule();
    });
  }

  /** Starts a group soon if a commit slot is free; otherwise the next finishing commit does. */
  private schedule(): void {
    if (this.scheduled || this.inFlight >= this.options.maxInFlight) return;
    this.scheduled = true;
    const go = () => {
      this.scheduled = false;
      if (this.inFlight < this.options.maxInFlight) this.flush();
    };
    if (this.options.windowMs > 0) setTimeout(go, this.options.windowMs);
    else setImmediate(go);
  }

  /** Commits the waiting requests, oldest first, up to `maxEvents` events and `maxBytes` of bodies (always at least one request). */
  private flush(): void {
    if (this.batch.length === 0) return;
    let take = 0;
    let events = 0;
    let bytes = 0;
    for (; take < this.batch.length; take++) {
      const next = (this.batch[take] as Pending).request;
      const nextBytes = next.bodyBytes ?? 0;
      if (take > 0 && (events + next.events.length > this.options.maxEvents || bytes + nextBytes > this.maxBytes)) break;
      events += next.events.length;
      bytes += nextBytes;
    }
    const group = this.batch.splice(0, take);
    this.batchEvents -= events;
    this.batchBytes -= bytes;
    this.inFlight++;
    void this.commit(group).finally(() => {
      this.inFlight--;
      if (this.batch.length > 0) this.schedule();
    });
    if (this.batch.length > 0) this.schedule();
  }

  /** Idempotency keys need their records written with the events: a transaction. Otherwise one statement is atomic alone. */
  private run(batch: Pending[]): Promise<IngestAnswer[]> {
    if (batch.some((p) => p.request.idempotencyKey !== undefined)) {
      return this.db.transaction().execute((trx) => this.process(trx, batch));
    }
    return this.process(this.db, batch);
  }

  private async commit(batch: Pending[]): Promise<void> {
    try {
      const answers = await this.run(batch);
      batch.forEach((p, i) => p.resolve(answers[i] as IngestAnswer));
    } catch (err) {
      // One request; events already committed (whose retry would store the id-less ones
      // twice); or the session lost mid-statement (a dropped connection, a statement
      // unanswered for DATABASE_QUERY_TIMEOUT_MS), when the group may yet commit on the
      // server: every request of the group gets the error (503), and a client retry with the
      // event id or Idempotency-Key is safe. Only an error the database answered with (the
      // statement rolled back) is worth committing the requests one by one.
      if (batch.length === 1 || err instanceof eventsRepo.EventsStoredAnswerUnknown || isConnectionError(err)) {
        for (const p of batch) p.reject(err);
        return;
      }
      // One request must not fail the others: commit each on its own.
      this.logger.warn({ err, requests: batch.length }, 'group commit failed; committing requests one by one');
      for (const p of batch) {
        try {
          const [answer] = await this.run([p]);
          p.resolve(answer as IngestAnswer);
        } catch (e) {
          p.reject(e);
        }
      }
    }
  }

  /** One transaction's work for a group of requests; answers in request order. */
  private async process(trx: Db, batch: Pending[]): Promise<IngestAnswer[]> {
    const answers: (IngestAnswer | undefined)[] = new Array(batch.length);

    // 1. References: environments and connections must be the caller's.
    const connectionEnvs = await this.checkReferences(trx, batch, answers);
    // A repeat is answered as the first was, whatever has happened to what it names since (a
    // connection deleted after the first was accepted): refused here, a client that takes a
    // 4xx as final recorded an accepted, delivered event as failed.
    const refused = batch.flatMap((p, i) => (answers[i]?.status === 400 ? [i] : []));
    if (refused.length > 0) {
      const repeats = await this.repeatsAmong(trx, refused.map((i) => batch[i] as Pending));
      refused.forEach((i, j) => {
        if (repeats[j]) answers[i] = undefined;
      });
    }

    // 2. Idempotency keys: a key seen before answers with its stored response.
    const keyed = batch
      .map((p, i) => ({ p, i }))
      .filter(({ p, i }) => answers[i] === undefined && p.request.idempotencyKey !== undefined);
    const firstByKey = new Map<string, number>();
    const claims: { workspaceId: string; key: string; requestHash: Buffer; index: number }[] = [];
    for (const { p, i } of keyed) {
      const k = `${p.request.scope.workspaceId}/${p.request.idempotencyKey}`;
      if (!firstByKey.has(k)) {
        firstByKey.set(k, i);
        claims.push({ workspaceId: p.request.scope.workspaceId, key: p.request.idempotencyKey as string, requestHash: p.requestHash, index: i });
      }
    }
    const stored = await eventsRepo.claimIdempotencyKeys(trx, claims);
    // A key answered before this group: every request of the group with that key is compared
    // with the stored request, not with the group's first (which may itself be a 409).
    const priorByKey = new Map<string, eventsRepo.IdempotentResponse>();
    claims.forEach((c, j) => {
      const prior = stored[j];
      if (prior) {
        answers[c.index] = replay(prior, c.requestHash);
        priorByKey.set(`${c.workspaceId}/${c.key}`, prior);
      }
    });

    // 3. Events and their fan-out, for every request still unanswered (repeats of a key within this group wait for the first).
    const fresh: { index: number; events: NewEvent[] }[] = [];
    batch.forEach((p, i) => {
      if (answers[i] !== undefined) return;
      const key = p.request.idempotencyKey;
      if (key !== undefined && firstByKey.get(`${p.request.scope.workspaceId}/${key}`) !== i) return;
      fresh.push({ index: i, events: p.request.events.map((e) => toNewEvent(p.request.scope, e, this.defaultEnvs, connectionEnvs)) });
    });
    const all = fresh.flatMap((f) => f.events);
    const results = await eventsRepo.ingestEvents(trx, all);
    let offset = 0;
    const toStore: { workspaceId: string; key: string; status: number; body: unknown }[] = [];
    for (const f of fresh) {
      const accepted: EventAccepted[] = f.events.map((e, j) => {
        const r = results[offset + j];
        if (!r) throw new Error('ingest result missing');
        return { id: r.eventId, ...(e.externalId !== null ? { external_id: e.externalId } : {}), deliveries: r.deliveries, duplicate: r.duplicate };
      });
      offset += f.events.length;
      const p = batch[f.index] as Pending;
      const answer: IngestAnswer = { status: 202, body: p.request.single ? accepted[0] : { events: accepted } };
      answers[f.index] = answer;
      if (p.request.idempotencyKey !== undefined) {
        toStore.push({ workspaceId: p.request.scope.workspaceId, key: p.request.idempotencyKey, status: answer.status, body: answer.body });
      }
    }
    await eventsRepo.storeIdempotentResponses(trx, toStore);

    // Repeats of a key inside this group get the first request's answer.
    batch.forEach((p, i) => {
      if (answers[i] !== undefined) return;
      const k = `${p.request.scope.workspaceId}/${p.request.idempotencyKey}`;
      const prior = priorByKey.get(k);
      if (prior) {
        answers[i] = replay(prior, p.requestHash);
        return;
      }
      const first = firstByKey.get(k) as number;
      answers[i] = (batch[first] as Pending).requestHash.equals(p.requestHash) ? (answers[first] as IngestAnswer) : keyMismatch();
    });
    return answers as IngestAnswer[];
  }

  /** Default environment per workspace, filled by checkReferences. */
  private defaultEnvs = new Map<string, string>();
  /**
   * Environment → workspace, as last read (positive answers only, short-lived). Connections are
   * read by every group that names one (one lookup by primary key): cached, a connection
   * deleted (in this API process or another) still took events for seconds, fanned out to
   * the workspace's webhooks for all connections.
   */
  private envCache = new Map<string, { workspaceId: string; at: number }>();
  private static readonly REFERENCE_TTL_MS = 5000;

  /**
   * Which of these requests repeat one answered before: its Idempotency-Key has a stored
   * response, or every event's id is already stored in its workspace (answered as duplicates,
   * nothing created). Only requests that would otherwise be refused are asked about.
   */
  private async repeatsAmong(db: Db, requests: Pending[]): Promise<boolean[]> {
    return Promise.all(
      requests.map(async ({ request: { scope, idempotencyKey, events } }) => {
        if (idempotencyKey !== undefined) return eventsRepo.hasStoredResponse(db, scope.workspaceId, idempotencyKey);
        const ids = events.map((e) => e.id);
        if (ids.some((id) => id === undefined)) return false;
        return (await eventsRepo.storedExternalIds(db, scope.workspaceId, ids as string[])) === new Set(ids).size;
      }),
    );
  }

  /** Answers requests whose references are not the caller's; returns the environment of each connection named. */
  private async checkReferences(db: Db, batch: Pending[], answers: (IngestAnswer | undefined)[]): Promise<Map<string, string>> {
    const now = Date.now();
    const fresh = (at: number) => now - at < EventIngestor.REFERENCE_TTL_MS;
    const workspaceIds = [...new Set(batch.map((p) => p.request.scope.workspaceId))];
    const envIds = new Set(batch.flatMap((p) => p.request.events.flatMap((e) => (e.environment_id ? [e.environment_id] : []))));
    // Emptied before it is filled, never between: cleared after the read, the group's checks
    // found none of the environments just read (a valid environment_id refused, every time for
    // a workspace of more than 50,000).
    if (this.envCache.size > 50_000) this.envCache.clear();
    const needEnvs = workspaceIds.some((w) => !this.defaultEnvs.has(w)) || [...envIds].some((id) => !fresh(this.envCache.get(id)?.at ?? 0));
    if (needEnvs) {
      const envRows = await db.selectFrom('environments').select(['id', 'workspace_id', 'is_default']).where('workspace_id', 'in', workspaceIds).execute();
      for (const e of envRows) {
        this.envCache.set(e.id, { workspaceId: e.workspace_id, at: now });
        if (e.is_default) this.defaultEnvs.set(e.workspace_id, e.id);
      }
    }
    // This group's environments, taken before the next await: another group may empty the
    // cache meanwhile (past its size), and this one then refused the environments it had read.
    const envOf = new Map([...envIds].map((id) => [id, this.envCache.get(id)?.workspaceId]));
    const connectionIds = [...new Set(batch.flatMap((p) => p.request.events.flatMap((e) => (e.connection_id ? [e.connection_id] : []))))];
    const connOf = new Map<string, { workspace_id: string; environment_id: string }>();
    if (connectionIds.length > 0) {
      const rows = await db.selectFrom('connections').select(['id', 'workspace_id', 'environment_id']).where('id', 'in', connectionIds).execute();
      for (const c of rows) connOf.set(c.id, c);
    }
    const connectionEnvs = new Map<string, string>();
    batch.forEach((p, i) => {
      const { scope, events, single } = p.request;
      for (let j = 0; j < events.length; j++) {
        const e = events[j] as EventIn;
        const at = single ? 'body' : `body.events.${j}`;
        if (e.environment_id !== undefined) {
          const okEnv = envOf.get(e.environment_id) === scope.workspaceId && (scope.environmentId === null || scope.environmentId === e.environment_id);
          if (!okEnv) return (answers[i] = invalid(`${at}.environment_id`, 'no environment with this id in this workspace'));
        }
        if (e.connection_id !== undefined) {
          const c = connOf.get(e.connection_id);
          // The event's environment when it or the key names one; otherwise the connection's.
          const env = e.environment_id ?? scope.environmentId;
          if (!c || c.workspace_id !== scope.workspaceId) return (answers[i] = invalid(`${at}.connection_id`, 'no connection with this id in this workspace'));
          if (env !== undefined && env !== null && c.environment_id !== env) {
            return (answers[i] = invalid(`${at}.connection_id`, 'the connection belongs to another environment'));
          }
          connectionEnvs.set(e.connection_id, c.environment_id);
        }
      }
      return undefined;
    });
    return connectionEnvs;
  }
}

/**
 * The event as stored. Its environment: the one it names, else the key's, else its
 * connection's (checked in checkReferences: a connection lives in one environment, and an
 * event about it belongs there), else the workspace's default.
 */
function toNewEvent(scope: Scope, e: EventIn, defaultEnvs: Map<string, string>, connectionEnvs: ReadonlyMap<string, string>): NewEvent {
  const connectionEnv = e.connection_id !== undefined ? connectionEnvs.get(e.connection_id) : undefined;
  const environmentId = e.environment_id ?? scope.environmentId ?? connectionEnv ?? defaultEnvs.get(scope.workspaceId);
  if (!environmentId) throw new Error(`workspace ${scope.workspaceId} has no default environment`);
  return {
    id: newId(),
    workspaceId: scope.workspaceId,
    environmentId,
    externalId: e.id ?? null,
    type: e.type,
    objectType: e.object_type ?? null,
    connectionId: e.connection_id ?? null,
    data: e.data,
  };
}

function invalid(field: string, message: string): IngestAnswer {
  const err = new ApiError('validation_failed', `${field}: ${message}`, field, [{ field, message }]);
  return { status: err.status, body: err.toEnvelope() };
}

function keyMismatch(): IngestAnswer {
  const err = new ApiError('conflict', 'this Idempotency-Key was used with a different request body', 'header.idempotency-key');
  return { status: err.status, body: err.toEnvelope() };
}

/**
 * What a repeat of an idempotency key must match: the route and the events. The route is
 * part of it because a single event and a batch of that one event hash the same events,
 * and a key first used on one route must not replay that route's answer (`{id, …}` vs
 * `{events: […]}`) on the other. Single-event hashes are unchanged (no prefix), so keys
 * stored before still match.
 */
function hashRequest(request: IngestRequest): Buffer {
  const hash = createHash('sha256');
  // A key limited to one environment: its requests differ from another environment's with
  // the same body, so a repeat of the key from there is a 409, not the other's answer.
  if (request.scope.environmentId) hash.update(`env:${request.scope.environmentId}:`);
  return hash
    .update(request.single ? '' : 'batch:')
    .update(stringifyExact(request.events))
    .digest();
}

/** The request hash of a request without an idempotency key: never compared. */
const NO_HASH = Buffer.alloc(0);

function replay(prior: eventsRepo.IdempotentResponse, requestHash: Buffer): IngestAnswer {
  if (!prior.requestHash.equals(requestHash)) return keyMismatch();
  return { status: prior.status, body: prior.body };
}

/** The event with its connection and environment ids in lower case, as Postgres writes UUIDs. */
function lowerCaseIds(e: EventIn): EventIn {
  const connection = e.connection_id?.toLowerCase();
  const environment = e.environment_id?.toLowerCase();
  if (connection === e.connection_id && environment === e.environment_id) return e;
  return { ...e, ...(connection !== undefined ? { connection_id: connection } : {}), ...(environment !== undefined ? { environment_id: environment } : {}) };
}
