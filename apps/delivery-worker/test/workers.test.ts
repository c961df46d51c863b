/**
 * Several workers, crashes and restarts over one queue: two workers never send a
 * delivery twice; a SIGKILLed worker loses nothing (its leased deliveries come back
 * and are re-sent with the same webhook-id); a SIGTERMed worker finishes what it sent,
 * hands back what it had not, and exits 0; every Postgres session cut at once loses
 * nothing either.
 */
import type { ReceivedDelivery } from '@hookpost/mock-receiver';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, resentWithoutTimeout, startStack, type Proc, type Stack } from './stack.js';

const EVENT_TYPES = ['record:created', 'record:updated', 'record:deleted'] as const;

/**
 * Ingests `count` events through POST /v1/events/batch (type round-robin over
 * EVENT_TYPES); returns the accepted event ids and the deliveries the API reported.
 */
async function ingest(stack: Stack, count: number, tag: string, batchSize = 1000) {
  const eventIds: string[] = [];
  let deliveries = 0;
  for (let start = 0; start < count; start += batchSize) {
    const events = Array.from({ length: Math.min(batchSize, count - start) }, (_, i) => ({
      type: EVENT_TYPES[(start + i) % EVENT_TYPES.length],
      data: { id: `${tag}-${start + i}`, n: start + i },
    }));
    const res = await stack.call('POST', '/v1/events/batch', { events });
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    const accepted = res.body.events as { id: string; deliveries: number; duplicate: boolean }[];
    expect(accepted).toHaveLength(events.length);
    for (const a of accepted) {
      expect(a.duplicate).toBe(false);
      eventIds.push(a.id);
      deliveries += a.deliveries;
    }
  }
  return { eventIds, deliveries };
}

/** What the receiver got on `paths`, and how often each webhook-id arrived. */
function received(stack: Stack, paths: readonly string[]) {
  const list = stack.receiver.deliveries().filter((d) => paths.includes(d.path));
  const byId = new Map<string, ReceivedDelivery[]>();
  for (const d of list) {
    const key = d.webhook_id ?? '<none>';
    const seen = byId.get(key);
    if (seen) seen.push(d);
    else byId.set(key, [d]);
  }
  return { list, byId };
}

async function statusCounts(stack: Stack, webhookIds: readonly string[]): Promise<Record<string, number>> {
  const rows = await stack.database.db
    .selectFrom('deliveries')
    .select(['status', sql<number>`count(*)::int`.as('n')])
    .where('webhook_id', 'in', webhookIds)
    .groupBy('status')
    .execute();
  return Object.fromEntries(rows.map((r) => [r.status, Number(r.n)]));
}

/** Waits until every delivery of `webhookIds` is `succeeded` (no row pending, delivering or held). */
async function allSucceeded(stack: Stack, webhookIds: readonly string[], total: number, timeoutMs: number) {
  await eventually(
    async () => {
      const counts = await statusCounts(stack, webhookIds);
      return counts.succeeded === total && Object.keys(counts).length === 1;
    },
    timeoutMs,
    `all ${total} deliveries succeeded`,
  );
}

/** The `worker stopped` line a worker logs on a graceful stop, with its counters. */
function stoppedStats(proc: Proc): { claimed: number; sent: number; succeeded: number; failed: number; released: number } {
  for (const line of proc.output().split('\n')) {
    if (!line.includes('"worker stopped"')) continue;
    return (JSON.parse(line) as { stats: { claimed: number; sent: number; succeeded: number; failed: number; released: number } }).stats;
  }
  throw new Error(`no "worker stopped" line in:\n${proc.output().slice(-2000)}`);
}

/** (event, webhook) pairs no received body stands for (Truto body: `{id: event id, webhook_id}`). */
function missingPairs(list: readonly ReceivedDelivery[], eventIds: readonly string[], webhookIds: readonly string[]): string[] {
  const pairs = new Set(list.map((d) => {
    const body = d.body as { id?: string; webhook_id?: string };
    return `${body.id}/${body.webhook_id}`;
  }));
  return eventIds.flatMap((e) => webhookIds.map((w) => `${e}/${w}`)).filter((pair) => !pairs.has(pair));
}

/** Log lines at level error or fatal. */
function errorLines(proc: Proc): string[] {
  return proc.output().split('\n').filter((l) => /"level":(50|60)\b/.test(l));
}

describe('two workers on one database', () => {
  let stack: Stack;
  beforeAll(async () => {
    // A timeout is a legitimate reason to send again, so give sends room (a busy test
    // machine answers late) and use the product's lease rule (timeout + 30 s): any
    // second send here would be two workers holding one delivery.
    stack = await startStack({ workers: 2, env: { LOG_LEVEL: 'info', DELIVERY_TIMEOUT_MS: '10000', DELIVERY_LEASE_MS: '40000' } });
  });
  afterAll(async () => stack?.close());

  it('never send a delivery twice: every delivery arrives exactly once (but for retries after a timeout), signed, succeeded', async () => {
    const paths = ['/multi/slow-a', '/multi/slow-b', '/multi/fast'];
    stack.receiver.setBehaviour('/multi/slow-a', { latency_ms: 5 });
    stack.receiver.setBehaviour('/multi/slow-b', { latency_ms: 10 });
    const hooks = [];
    for (const p of paths) hooks.push(await stack.trutoWebhook(p));
    const webhookIds = hooks.map((h) => h.id);

    const events = 3000;
    const { eventIds, deliveries: total } = await ingest(stack, events, 'multi');
    expect(total).toBe(events * paths.length); // every Truto webhook takes every event type

    await eventually(() => received(stack, paths).byId.size >= total, 45_000, `${total} distinct webhook-ids at the receiver`);
    await allSucceeded(stack, webhookIds, total, 15_000);

    // Exactly once: no webhook-id twice, but for a send retried after it timed out. That is by
    // design, and a starved test machine has shown it: 48 first attempts of one batch got no
    // answer within 10 s (the receiver had them), their retries succeeded in ~30 ms. Two workers
    // holding one delivery, the bug looked for, leaves no timed-out attempt behind.
    const { list, byId } = received(stack, paths);
    const twice = [...byId].filter(([, ds]) => ds.length > 1).map(([id]) => id);
    expect(await resentWithoutTimeout(stack, twice)).toEqual([]);
    const retried = new Set(twice);
    const resends = list.length - byId.size;
    expect(list.filter((d) => !d.verified)).toEqual([]);
    expect(list.every((d) => d.signatures.standard === 'valid' && d.signatures.truto === 'valid')).toBe(true);

    // The webhook-ids are exactly the delivery rows' ids; each row succeeded on its first attempt.
    const rows = await stack.database.db.selectFrom('deliveries').select(['id', 'status', 'attempts', 'event_id']).where('webhook_id', 'in', webhookIds).execute();
    expect(rows).toHaveLength(total);
    expect(new Set(rows.map((r) => r.id))).toEqual(new Set(byId.keys()));
    expect(rows.filter((r) => r.status !== 'succeeded' || (r.attempts !== 1 && !retried.has(r.id)))).toEqual([]);
    // One delivery per (event, webhook): every accepted event reached every webhook.
    expect(new Set(rows.map((r) => r.event_id))).toEqual(new Set(eventIds));
    expect(missingPairs(list, eventIds, webhookIds)).toEqual([]);

    // One attempt logged per send: a success each, and a timeout before each retry.
    const attempts = await stack.database.db
      .selectFrom('delivery_attempts')
      .select(['outcome', sql<number>`count(*)::int`.as('n')])
      .where('webhook_id', 'in', webhookIds)
      .groupBy('outcome')
      .orderBy('outcome')
      .execute();
    expect(attempts.map((a) => ({ ...a, n: Number(a.n) }))).toEqual([{ outcome: 'success', n: total }, ...(resends > 0 ? [{ outcome: 'timeout', n: resends }] : [])]);

    // Both workers did part of the work, and between them sent each delivery once:
    // stop them gracefully and read the counters each logs on the way out.
    const codes = await Promise.all(stack.workers.map((w) => w.kill('SIGTERM')));
    expect(codes).toEqual([0, 0]);
    const stats = stack.workers.map(stoppedStats);
    for (const s of stats) expect(s.succeeded).toBeGreaterThan(0);
    expect(stats.reduce((sum, s) => sum + s.succeeded, 0)).toBe(total);
    expect(stats.reduce((sum, s) => sum + s.sent, 0)).toBe(total + resends);
    expect(stats.reduce((sum, s) => sum + s.failed, 0)).toBe(resends);
    // …and neither logged an error (a failed claim or completion write would show here).
    for (const w of stack.workers) expect(errorLines(w)).toEqual([]);
  }, 60_000);
});

describe('a worker killed with SIGKILL mid-run', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ workers: 0 });
  });
  afterAll(async () => stack?.close());

  it('loses nothing: leased deliveries come back after the lease and are re-sent with the same webhook-id', async () => {
    const paths = ['/crash/a', '/crash/b', '/crash/c'];
    const latencies = [30, 40, 50];
    paths.forEach((p, i) => stack.receiver.setBehaviour(p, { latency_ms: latencies[i] }));
    const hooks = [];
    for (const p of paths) hooks.push(await stack.trutoWebhook(p));
    const webhookIds = hooks.map((h) => h.id);

    // Everything is queued before the worker starts, so the kill certainly lands mid-run.
    const { eventIds, deliveries: total } = await ingest(stack, 1500, 'crash', 500);
    expect(total).toBe(1500 * paths.length);

    const first = await stack.startWorker();
    await eventually(() => received(stack, paths).byId.size >= total / 4, 30_000, 'a quarter delivered');
    expect(await first.kill('SIGKILL')).toBeNull(); // killed by the signal: no exit code
    expect(first.child.signalCode).toBe('SIGKILL');
    const atKill = received(stack, paths).byId.size;
    expect(atKill).toBeLessThan(total);
    // The dead worker left claimed deliveries behind, leased to nobody alive.
    const stranded = await statusCounts(stack, webhookIds);
    expect(stranded.delivering ?? 0).toBeGreaterThan(0);
    expect(stranded.pending ?? 0).toBeGreaterThan(0);

    await stack.startWorker();
    await eventually(() => received(stack, paths).byId.size >= total, 40_000, `${total} distinct webhook-ids after the restart`);
    await allSucceeded(stack, webhookIds, total, 15_000);

    const { list, byId } = received(stack, paths);
    const rows = await stack.database.db.selectFrom('deliveries').select(['id', 'status', 'event_id', 'webhook_id']).where('webhook_id', 'in', webhookIds).execute();
    expect(rows).toHaveLength(total);
    expect(rows.filter((r) => r.status !== 'succeeded')).toEqual([]);
    const rowIds = new Set(rows.map((r) => r.id));

    // None lost: every delivery row's id arrived, and nothing arrived that is not a delivery row.
    expect(new Set(byId.keys())).toEqual(rowIds);
    expect(list.filter((d) => !d.verified)).toEqual([]);
    // Every accepted event reached every webhook.
    expect(missingPairs(list, eventIds, webhookIds)).toEqual([]);

    // Duplicates are allowed (sent before the crash, re-sent after the lease), but a
    // duplicate is the same delivery: same webhook-id (a delivery row's id), same body.
    const dupes = [...byId].filter(([, ds]) => ds.length > 1);
    for (const [id, ds] of dupes) {
      expect(rowIds.has(id)).toBe(true);
      for (const d of ds.slice(1)) expect(d.body).toEqual(ds[0]?.body);
      expect(ds.every((d) => d.path === ds[0]?.path)).toBe(true);
    }
    // A re-sent delivery was attempted again: its row counts more than one attempt.
    if (dupes.length > 0) {
      const retried = await stack.database.db
        .selectFrom('deliveries')
        .select(['id', 'attempts'])
        .where('id', 'in', dupes.map(([id]) => id))
        .execute();
      expect(retried.every((r) => r.attempts >= 2)).toBe(true);
    }
  }, 60_000);
});

describe('a worker stopped with SIGTERM mid-run', () => {
  let stack: Stack;
  beforeAll(async () => {
    // Room for slow answers on a busy machine: a timeout would (rightly) send again.
    stack = await startStack({ workers: 0, env: { DELIVERY_TIMEOUT_MS: '4000', DELIVERY_LEASE_MS: '34000' } });
  });
  afterAll(async () => stack?.close());

  it('finishes its in-flight sends, hands back the rest, exits 0; a new worker delivers everything once', async () => {
    const paths = ['/term/a', '/term/b'];
    for (const p of paths) stack.receiver.setBehaviour(p, { latency_ms: 200 });
    const hooks = [];
    for (const p of paths) hooks.push(await stack.trutoWebhook(p));
    const webhookIds = hooks.map((h) => h.id);
    const { deliveries: total } = await ingest(stack, 600, 'term', 600);
    expect(total).toBe(600 * paths.length);

    const worker = await stack.startWorker();
    await eventually(() => received(stack, paths).list.length >= 64, 20_000, 'the first deliveries');
    const inFlight = await statusCounts(stack, webhookIds);
    expect(inFlight.delivering ?? 0).toBeGreaterThan(0);

    const stoppedAt = Date.now();
    expect(await worker.kill('SIGTERM')).toBe(0);
    expect(Date.now() - stoppedAt).toBeLessThan(4_000); // in-flight sends take ~200 ms
    expect(worker.output()).toContain('"worker stopped"');

    // Nothing is left claimed by the stopped worker: sent ones are recorded, unsent ones are back in the queue.
    const after = await statusCounts(stack, webhookIds);
    expect(after.delivering ?? 0).toBe(0);
    expect(after.succeeded ?? 0).toBeGreaterThan(0);
    expect(after.pending ?? 0).toBeGreaterThan(0);
    // Everything it sent, it recorded: the receiver has no webhook-id whose row is not succeeded.
    const sentBefore = received(stack, paths).byId;
    const succeededRows = await stack.database.db
      .selectFrom('deliveries')
      .select('id')
      .where('webhook_id', 'in', webhookIds)
      .where('status', '=', 'succeeded')
      .execute();
    expect(new Set(succeededRows.map((r) => r.id))).toEqual(new Set(sentBefore.keys()));

    stack.receiver.setBehaviour('/term/a', undefined);
    stack.receiver.setBehaviour('/term/b', undefined);
    await stack.startWorker();
    await eventually(() => received(stack, paths).byId.size >= total, 30_000, `${total} distinct webhook-ids after the restart`);
    await allSucceeded(stack, webhookIds, total, 15_000);

    const { list, byId } = received(stack, paths);
    expect(list).toHaveLength(total); // a graceful stop causes no duplicates
    expect(list.filter((d) => !d.verified)).toEqual([]);
    const rows = await stack.database.db.selectFrom('deliveries').select(['id', 'status', 'attempts']).where('webhook_id', 'in', webhookIds).execute();
    expect(new Set(rows.map((r) => r.id))).toEqual(new Set(byId.keys()));
    // Handed-back deliveries did not count an attempt: each succeeded on attempt 1.
    expect(rows.filter((r) => r.status !== 'succeeded' || r.attempts !== 1)).toEqual([]);
  }, 60_000);
});

describe('a worker stopped with SIGTERM while a slow send is in flight', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ workers: 0, env: { DELIVERY_TIMEOUT_MS: '14000', DELIVERY_LEASE_MS: '60000' } });
  });
  afterAll(async () => stack?.close());

  it('waits for a send up to DELIVERY_TIMEOUT_MS, records it, then exits 0', async () => {
    // Before the fix the engine waited 10 s whatever the timeout: an 11 s answer was
    // received but never recorded (written after the pools closed), and sent again later.
    stack.receiver.setBehaviour('/term/slow', { latency_ms: 11_000 });
    const hook = await stack.trutoWebhook('/term/slow');
    await ingest(stack, 1, 'term-slow', 1);
    const worker = await stack.startWorker();
    await eventually(async () => (await statusCounts(stack, [hook.id])).delivering === 1, 10_000, 'in flight');
    expect(await worker.kill('SIGTERM')).toBe(0);
    expect(await statusCounts(stack, [hook.id])).toEqual({ succeeded: 1 });
    const attempts = await stack.database.db.selectFrom('delivery_attempts').select('outcome').where('webhook_id', '=', hook.id).execute();
    expect(attempts.map((a) => a.outcome)).toEqual(['success']);
  }, 40_000);
});

describe('every connection to Postgres cut mid-run', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ workers: 1 });
  });
  afterAll(async () => stack?.close());

  /** Terminates every session the API and the worker hold: their pools and the worker's LISTEN connection. */
  async function cutConnections(): Promise<number> {
    const r = await sql<{ pid: number }>`
      with theirs as materialized (
        select pid from pg_stat_activity
        where datname = current_database() and application_name in ('hookpost-api', 'hookpost-worker', 'hookpost-worker-listen', 'hookpost-poller')
      )
      select pid from theirs where pg_terminate_backend(pid)
    `.execute(stack.database.db);
    return r.rows.length;
  }

  it('loses nothing: the API answers again, the worker reconnects its pool and its LISTEN, and every event arrives', async () => {
    const paths = ['/cut/a', '/cut/b'];
    for (const p of paths) stack.receiver.setBehaviour(p, { latency_ms: 20 });
    const hooks = [];
    for (const p of paths) hooks.push(await stack.trutoWebhook(p));
    const webhookIds = hooks.map((h) => h.id);

    const before = await ingest(stack, 1000, 'cut-before', 250);
    await eventually(() => received(stack, paths).byId.size >= before.deliveries / 4, 30_000, 'a quarter delivered');
    expect(await cutConnections()).toBeGreaterThanOrEqual(3); // at least the API, a worker pool session and LISTEN
    const worker = stack.workers[0] as Proc;

    // Straight after the cut, a request may meet a session the API has not yet seen
    // close: a 503 to retry, never a 500, and a retry with the same key is one event.
    const answers: number[] = [];
    let probe: { status: number; body: any } | undefined; // eslint-disable-line @typescript-eslint/no-explicit-any
    for (let i = 0; i < 10 && probe?.status !== 202; i++) {
      probe = await stack.call('POST', '/v1/events', { type: 'record:created', data: { id: 'cut-probe' } }, { 'idempotency-key': 'cut-probe' });
      answers.push(probe.status);
      if (probe.status === 503) expect(probe.body.error.code).toBe('unavailable');
    }
    expect(answers.filter((a) => a !== 503 && a !== 202), JSON.stringify(probe?.body)).toEqual([]);
    expect(probe?.status).toBe(202);
    const probeEvent = probe?.body as { id: string; deliveries: number };
    // The pools have dropped the sessions Postgres closed: the API takes events again.
    const after = await ingest(stack, 200, 'cut-after', 100);
    after.eventIds.push(probeEvent.id);
    const total = before.deliveries + after.deliveries + probeEvent.deliveries;
    await eventually(() => worker.output().includes('listen connection lost; reconnecting'), 10_000, 'the worker noticing its LISTEN connection went');
    // Delivered well before the worker's 30 s idle re-check: woken by NOTIFY on the new LISTEN connection.
    await eventually(() => received(stack, paths).byId.size >= total, 20_000, `${total} distinct webhook-ids after the cut`);
    await allSucceeded(stack, webhookIds, total, 20_000);

    const { list, byId } = received(stack, paths);
    expect(list.filter((d) => !d.verified)).toEqual([]);
    expect(missingPairs(list, [...before.eventIds, ...after.eventIds], webhookIds)).toEqual([]);
    const rows = await stack.database.db.selectFrom('deliveries').select('id').where('webhook_id', 'in', webhookIds).execute();
    expect(new Set(byId.keys())).toEqual(new Set(rows.map((r) => r.id)));
    // A send whose result could not be recorded is sent again, as the same delivery.
    for (const ds of byId.values()) for (const d of ds.slice(1)) expect(d.body).toEqual(ds[0]?.body);
    // The worker kept running, and the one after the cut is idle again: nothing left claimed.
    expect(worker.child.exitCode).toBeNull();
    expect(worker.output()).not.toContain("Unhandled 'error' event");
    expect((await statusCounts(stack, webhookIds)).delivering ?? 0).toBe(0);

    // And a later event is delivered within moments: NOTIFY reaches the reconnected listener.
    const late = await ingest(stack, 1, 'cut-late', 1);
    const sentAt = Date.now();
    await eventually(() => received(stack, paths).byId.size >= total + late.deliveries, 5_000, 'a later event, woken by NOTIFY');
    expect(Date.now() - sentAt).toBeLessThan(5_000);
  }, 90_000);
});
