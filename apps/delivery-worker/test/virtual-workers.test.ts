/**
 * Virtual webhooks with several workers and crashes: two workers never poll one
 * connection at once, and a worker killed mid-run loses no change and re-sends
 * nothing beyond the page in flight.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { eventually } from './stack.js';
import { FAST, startVirtualKit, type VirtualKit } from './virtual-kit.js';

let kit: VirtualKit;
beforeAll(async () => {
  kit = await startVirtualKit({ workers: 2 });
});
afterAll(async () => kit?.close());

/** Each record id → the distinct webhook-ids (delivery ids) it arrived under. */
function arrivals(prefix: string): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const d of kit.stack.receiver.deliveries()) {
    if (!d.path.startsWith(prefix)) continue;
    for (const r of (d.body as { data: { id: string }[] }).data) {
      const key = `${d.path}|${r.id}`;
      const set = out.get(key) ?? new Set<string>();
      set.add(d.webhook_id ?? '');
      out.set(key, set);
    }
  }
  return out;
}

describe('several workers', () => {
  test('two workers share the polling and never poll one connection at once; every change arrives once', async () => {
    const tokens = Array.from({ length: 12 }, () => `tok-${randomUUID()}`);
    kit.provider.setBehaviour(undefined, { latency_ms: 40 });
    const webhooks = await Promise.all(
      tokens.map(async (t, i) => {
        const conn = await kit.connection(t);
        return kit.webhook(conn, `/w2/${i}`, { interval: FAST });
      }),
    );
    await Promise.all(webhooks.map((w) => kit.runsAfter(w, Date.now())));
    const made = tokens.map((t) => [kit.created(t), kit.created(t)]);
    await eventually(() => tokens.every((_, i) => kit.ids(`/w2/${i}`).length >= 2), 20_000, 'all changes');
    await Promise.all(webhooks.map((w) => kit.runsAfter(w, Date.now(), 2)));
    kit.provider.clearBehaviours();

    tokens.forEach((t, i) => {
      expect(kit.ids(`/w2/${i}`).sort()).toEqual([...(made[i] ?? [])].sort());
      expect(kit.provider.accountStats(t).max_concurrent).toBe(1);
    });
    // Both workers polled (their leases are named after them in the logs is not needed: the lease owner shows in the db).
    const owners = await kit.stack.database.db
      .selectFrom('poll_runs')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow();
    expect(Number(owners.n)).toBeGreaterThan(tokens.length);
  });

  test('a connection of several one-page streams, each slow, keeps its lease: never polled by two workers at once, no history sent twice', async () => {
    const token = `tok-${randomUUID()}`;
    const conn = await kit.connection(token);
    // Four streams (one per filter) of one page each, 1.2 s per answer: 4.8 s in all, where
    // the lease (POLL_LEASE_MS) is 3 s. The lease was renewed only after a page that was not
    // a stream's last, so it ran out and the other worker ran the connection too.
    kit.provider.setBehaviour(token, { latency_ms: 1200 });
    const hooks = await Promise.all(
      [0, 1, 2, 3].map((i) => kit.webhook(conn, `/lease-streams/${i}`, { interval: 60, filters: { name: `nobody-${i}` } }, true)),
    );
    await eventually(() => hooks.every((_, i) => kit.bodies(`/lease-streams/${i}`).some((b) => b.type === 'INITIAL-COMPLETE')), 30_000, 'four initial syncs');
    await new Promise((r) => setTimeout(r, 2_000)); // a second, overlapping run would have ended by now
    kit.provider.clearBehaviours();
    expect(kit.provider.accountStats(token).max_concurrent).toBe(1);
    for (let i = 0; i < 4; i++) expect(kit.bodies(`/lease-streams/${i}`).filter((b) => b.type === 'INITIAL-COMPLETE')).toHaveLength(1);
  }, 60_000);

  test('SIGKILL mid-run: every change arrives, none twice beyond the page in flight', async () => {
    const token = `tok-${randomUUID()}`;
    const conn = await kit.connection(token);
    const id = await kit.webhook(conn, '/crash', { page_max_limit: 50, interval: FAST });
    await kit.runsAfter(id, Date.now());
    // Slow pages so the run is long: 1,500 changes = 30 pages of 50 at ≥ 80 ms each.
    kit.provider.setBehaviour(token, { latency_ms: 80 });
    const made = Array.from({ length: 1500 }, () => kit.created(token));
    await eventually(() => kit.ids('/crash').length >= 200, 20_000, 'the run under way');
    // Kill both workers mid-run, then start one again (the lease expires after 3 s).
    await Promise.all(kit.stack.workers.map((w) => w.kill('SIGKILL')));
    const atKill = kit.ids('/crash').length;
    expect(atKill).toBeLessThan(made.length);
    await kit.stack.startWorker();
    await eventually(() => new Set(kit.ids('/crash')).size >= made.length, 40_000, 'every change after the crash');
    await kit.runsAfter(id, Date.now(), 2);
    kit.provider.clearBehaviours();

    const got = arrivals('/crash');
    expect([...got.keys()].map((k) => k.split('|')[1]).sort()).toEqual([...made].sort());
    // A record under two different webhook-ids would be a re-sent page; allow at most one page.
    const resent = [...got.values()].filter((s) => s.size > 1).length;
    expect(resent).toBeLessThanOrEqual(50);
    for (const d of kit.stack.receiver.deliveries().filter((x) => x.path === '/crash')) expect(d.verified).toBe(true);
  });
});
