/**
 * Virtual webhooks when the source misbehaves: 5xx (read failures → unhealthy →
 * recovery; long enough → paused → resume continues from the stored cursor), 401
 * (the connection is unhealthy, not the webhooks), 429 with Retry-After (a wait, not
 * a failure), and sync_job_run events for Truto-face subscribers.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { eventually } from './stack.js';
import { startVirtualKit, type VirtualKit } from './virtual-kit.js';

let kit: VirtualKit;
beforeAll(async () => {
  kit = await startVirtualKit({ env: { HEALTH_PAUSE_AFTER_SECONDS: '4' } });
});
afterAll(async () => kit?.close());

const get = async (path: string) => (await kit.stack.call('GET', path)).body;

describe('source failures', () => {
  test('5xx: failed read runs mark the webhook unhealthy with the reason; recovery makes it healthy and nothing changed meanwhile is lost', async () => {
    const token = `tok-${randomUUID()}`;
    const conn = await kit.connection(token);
    const id = await kit.webhook(conn, '/h/read');
    await kit.runsAfter(id, Date.now());
    kit.provider.setBehaviour(token, { status: 503, times: 6 });
    const during = kit.created(token);
    const unhealthy = await eventually(async () => {
      const w = await get(`/unified/webhook/${id}`);
      return w.is_healthy === false ? w : undefined;
    }, 15_000, 'unhealthy');
    expect(unhealthy.checked_at).toBeDefined();
    const failed = (await kit.runs(id)).filter((r) => r.status === 'failed');
    expect(failed.length).toBeGreaterThanOrEqual(2);
    expect(failed[0]).toMatchObject({ error_class: 'read' });
    expect(failed[0]?.error).toContain('503');

    // The source recovers by itself: the webhook is healthy again and gets what changed.
    await eventually(async () => (await get(`/unified/webhook/${id}`)).is_healthy === true, 15_000, 'healthy again');
    await eventually(() => kit.ids('/h/read').includes(during), 15_000, 'the change made during the outage');
    expect(kit.ids('/h/read')).toEqual([during]);
  });

  test('failing past the pause period pauses the webhook; resume continues from the stored cursor', async () => {
    const token = `tok-${randomUUID()}`;
    const conn = await kit.connection(token);
    const id = await kit.webhook(conn, '/h/pause');
    await kit.runsAfter(id, Date.now());
    kit.provider.setBehaviour(token, { status: 500 });
    const during = kit.created(token);
    await eventually(async () => (await get(`/unified/webhook/${id}`)).is_paused === true, 20_000, 'paused');
    kit.provider.setBehaviour(token, undefined);
    const after = kit.created(token);
    // Paused: no polling, nothing sent.
    const requests = kit.provider.requests({ token }).length;
    await new Promise((r) => setTimeout(r, 1000));
    expect(kit.provider.requests({ token }).length).toBeLessThanOrEqual(requests + 1);
    expect(kit.ids('/h/pause')).toEqual([]);

    const resumed = await kit.stack.call('PUT', `/unified/webhook/${id}/resume`);
    expect(resumed.body).toMatchObject({ is_healthy: true, is_paused: false });
    await eventually(() => kit.ids('/h/pause').length >= 2, 15_000, 'changes after resume');
    await kit.runsAfter(id, Date.now());
    expect(kit.ids('/h/pause').sort()).toEqual([during, after].sort());
  });

  test('resumed while its source still fails, the webhook gets a new failure streak: not paused again by the next failed run', async () => {
    // Before, the streak lived on in the stream (past the threshold, failing for longer than the
    // pause period): the first failed run after the resume paused it again at once.
    const token = `tok-${randomUUID()}`;
    const conn = await kit.connection(token);
    const id = await kit.webhook(conn, '/h/resume-failing');
    await kit.runsAfter(id, Date.now());
    kit.provider.setBehaviour(token, { status: 500 });
    await eventually(async () => (await get(`/unified/webhook/${id}`)).is_paused === true, 20_000, 'paused');
    const resumedAt = Date.now();
    expect((await kit.stack.call('PUT', `/unified/webhook/${id}/resume`)).status).toBe(200);
    await kit.runsAfter(id, resumedAt, 1, 'failed');
    await new Promise((r) => setTimeout(r, 300));
    expect(await get(`/unified/webhook/${id}`)).toMatchObject({ is_paused: false });
    kit.provider.setBehaviour(token, undefined);
  });

  test('401: the connection is marked unhealthy (not the webhooks) and left alone until its credentials change', async () => {
    const token = `tok-${randomUUID()}`;
    const conn = await kit.connection(token);
    const id = await kit.webhook(conn, '/h/auth');
    await kit.runsAfter(id, Date.now());
    kit.provider.setBehaviour(token, { status: 401 });
    const during = kit.created(token);
    await eventually(async () => {
      const c = await get(`/unified/connection/${conn}`);
      return c.last_unhealthy_at && (!c.last_healthy_at || c.last_unhealthy_at >= c.last_healthy_at);
    }, 15_000, 'connection unhealthy');
    const failed = await kit.runsAfter(id, 0, 1, 'failed');
    expect(failed[0]).toMatchObject({ error_class: 'auth' });
    expect((await get(`/unified/webhook/${id}`)).is_healthy).toBe(true);
    // Refused credentials are not retried every interval (POLL_AUTH_RETRY_MS is 5 min here).
    const before = kit.provider.requests({ token }).length;
    await new Promise((r) => setTimeout(r, 1200));
    expect(kit.provider.requests({ token }).length).toBe(before);

    // New credentials (here: the same, now accepted) → polled at once, healthy again.
    kit.provider.setBehaviour(token, undefined);
    const patched = await kit.stack.call('PATCH', `/unified/connection/${conn}`, { auth: { api_url: kit.provider.url, access_token: token } });
    expect(patched.status).toBe(200);
    await eventually(() => kit.ids('/h/auth').includes(during), 15_000, 'the change made while refused');
    await eventually(async () => {
      const c = await get(`/unified/connection/${conn}`);
      return c.last_healthy_at && c.last_healthy_at > c.last_unhealthy_at;
    }, 10_000, 'connection healthy');
  });

  test('401 on a stream of a long interval: new credentials poll it at once, not an interval later', async () => {
    // Before, a failed run's next run was one interval away, auth failures too: with the
    // default 60 minutes, new credentials were first used an hour later.
    const token = `tok-${randomUUID()}`;
    const conn = await kit.connection(token);
    const id = await kit.webhook(conn, '/h/auth-long', { interval: 60 });
    expect((await kit.stack.call('PUT', `/unified/webhook/${id}/trigger`)).status).toBe(200);
    await kit.runsAfter(id, 0);
    kit.provider.setBehaviour(token, { status: 401 });
    const during = kit.created(token);
    const failedAfter = Date.now();
    expect((await kit.stack.call('PUT', `/unified/webhook/${id}/trigger`)).status).toBe(200);
    await kit.runsAfter(id, failedAfter, 1, 'failed');
    kit.provider.setBehaviour(token, undefined);
    expect((await kit.stack.call('PATCH', `/unified/connection/${conn}`, { auth: { api_url: kit.provider.url, access_token: token } })).status).toBe(200);
    await eventually(() => kit.ids('/h/auth-long').includes(during), 15_000, 'the change, with the new credentials');
  });

  test('429 with Retry-After: the poller waits as asked, the webhook stays healthy, the change arrives', async () => {
    const token = `tok-${randomUUID()}`;
    const conn = await kit.connection(token);
    const id = await kit.webhook(conn, '/h/429');
    await kit.runsAfter(id, Date.now());
    kit.provider.setBehaviour(token, { status: 429, retry_after: '2', times: 1 });
    const x = kit.created(token);
    await eventually(() => kit.ids('/h/429').includes(x), 15_000, 'the change after the wait');
    const log = kit.provider.requests({ token });
    const limited = log.findIndex((r) => r.status === 429);
    expect(limited).toBeGreaterThanOrEqual(0);
    const next = log[limited + 1];
    expect(next).toBeDefined();
    expect(Date.parse(next?.at ?? '') - Date.parse(log[limited]?.at ?? '')).toBeGreaterThanOrEqual(1900);
    expect((await get(`/unified/webhook/${id}`)).is_healthy).toBe(true);
    expect((await kit.runs(id)).filter((r) => r.status === 'failed')).toEqual([]);
  });

  test('cursors that cycle: the run fails (process) instead of listing for ever, the webhook goes unhealthy, and recovers once the source is fixed', async () => {
    // Before, a last page whose next_cursor led back to an earlier page kept the run going:
    // it never ended, never failed, and nothing else of the connection was polled.
    const token = `tok-${randomUUID()}`;
    const conn = await kit.connection(token);
    kit.provider.setBehaviour(token, { cursor_loop: true });
    const id = await kit.webhook(conn, '/h/cycle', { page_max_limit: 2 }); // 5 records: 3 pages, then back to the second
    const [failed] = await kit.runsAfter(id, 0, 1, 'failed');
    expect(failed).toMatchObject({ error_class: 'process' });
    expect(failed?.error).toContain('its pages cycle');
    await eventually(async () => (await get(`/unified/webhook/${id}`)).is_healthy === false, 15_000, 'unhealthy');
    // Each failed run listed a few pages, not hundreds.
    expect(kit.provider.requests({ token }).length).toBeLessThan(50);

    kit.provider.setBehaviour(token, undefined);
    await eventually(async () => (await get(`/unified/webhook/${id}`)).is_healthy === true, 15_000, 'healthy again');
  });

  test('a connection without auth.api_url is not a source: never polled, never marked unhealthy', async () => {
    const res = await kit.stack.call('POST', '/unified/connection', { integration_type: 'hubspot', categories: ['crm'], permissions: [], auth: { access_token: 'x' } });
    const id = await kit.webhook(res.body.id, '/h/no-source');
    await new Promise((r) => setTimeout(r, 1500));
    expect(await kit.runs(id)).toEqual([]);
    const c = await get(`/unified/connection/${res.body.id}`);
    expect(c.last_unhealthy_at).toBeUndefined();
    expect((await get(`/unified/webhook/${id}`)).is_healthy).toBe(true);
  });
});

describe('sync_job_run events', () => {
  test('Truto-face subscribers get sync_job_run:started and :completed for each run', async () => {
    const token = `tok-${randomUUID()}`;
    const conn = await kit.connection(token);
    const truto = await kit.stack.trutoWebhook('/h/jobs', { event_types: ['sync_job_run:started', 'sync_job_run:completed'] });
    const id = await kit.webhook(conn, '/h/jobs-virtual');
    await kit.runsAfter(id, Date.now(), 2);
    // Other tests' connections run in this workspace too: keep this connection's events.
    const got = await eventually(() => {
      const d = kit.stack.receiver
        .deliveries()
        .filter((x) => x.path === '/h/jobs' && (x.body as { payload: { integrated_account_id: string } }).payload.integrated_account_id === conn);
      return d.length >= 4 ? d : undefined;
    }, 15_000, 'sync_job_run events');
    const events = got.map((d) => d.body as { event: string; webhook_id: string; payload: { integrated_account_id: string; status: string; resource: string } });
    expect(new Set(events.map((e) => e.event))).toEqual(new Set(['sync_job_run:started', 'sync_job_run:completed']));
    for (const e of events) {
      expect(e.webhook_id).toBe(truto.id);
      expect(e.payload).toMatchObject({ integrated_account_id: conn, resource: 'crm_contact', args: { integrated_account_id: conn } });
    }
    for (const d of got) expect(d.verified).toBe(true);
  });

  test('a source answering 429 sends sync_job_run:rate_limited (the run still running, the wait asked for); the run then completes', async () => {
    const token = `tok-${randomUUID()}`;
    const conn = await kit.connection(token);
    const truto = await kit.stack.trutoWebhook('/h/limited-jobs', { event_types: ['sync_job_run:rate_limited', 'sync_job_run:started', 'sync_job_run:completed'] });
    kit.provider.setBehaviour(token, { status: 429, retry_after: '1', times: 1 });
    const id = await kit.webhook(conn, '/h/limited-virtual');
    const [limited] = await eventually(() => {
      const d = kit.stack.receiver
        .deliveries()
        .filter((x) => x.path === '/h/limited-jobs' && (x.body as { event: string; payload: { integrated_account_id: string } }).payload.integrated_account_id === conn)
        .filter((x) => (x.body as { event: string }).event === 'sync_job_run:rate_limited');
      return d.length >= 1 ? d : undefined;
    }, 15_000, 'sync_job_run:rate_limited');
    expect(limited?.verified).toBe(true);
    expect(limited?.body).toMatchObject({
      event: 'sync_job_run:rate_limited',
      webhook_id: truto.id,
      payload: { integrated_account_id: conn, resource: 'crm_contact', status: 'running', retry_after: 1, finished_at: null },
    });
    await kit.runsAfter(id, 0, 1, 'completed');
    // One run, told as one: started, rate_limited and completed carry its id, and it started
    // once (before, the resumed run got a new id and a second `started`, and the first never ended).
    const phases = await eventually(() => {
      const d = kit.stack.receiver
        .deliveries()
        .filter((x) => x.path === '/h/limited-jobs' && (x.body as { payload: { integrated_account_id: string } }).payload.integrated_account_id === conn)
        .map((x) => x.body as { event: string; payload: { id: string } });
      return d.some((b) => b.event === 'sync_job_run:completed') ? d : undefined;
    }, 15_000, 'sync_job_run:completed');
    const firstRun = phases.filter((b) => b.payload.id === phases[0]?.payload.id).map((b) => b.event);
    expect(firstRun).toEqual(['sync_job_run:started', 'sync_job_run:rate_limited', 'sync_job_run:completed']);
    const record = await kit.stack.database.db.selectFrom('poll_runs').select(['status', 'trigger']).where('id', '=', phases[0]!.payload.id).executeTakeFirst();
    expect(record?.status).toBe('completed');
  });
});
