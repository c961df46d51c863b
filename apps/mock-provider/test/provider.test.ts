import { once } from 'node:events';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SourceListPage, SourceRecord, sourceListSearch, type SourceListQuery } from '@hookpost/contract';
import { spawnLogged } from '@hookpost/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startProvider, type MockProvider } from '../src/provider.js';

let provider: MockProvider;
let tokenSeq = 0;
/** A fresh account per test, so tests do not see each other's changes. */
const freshToken = () => `tok_${process.pid}_${++tokenSeq}`;

beforeAll(async () => {
  provider = await startProvider('127.0.0.1', 0, { generatorTickMs: 50 });
});
afterAll(async () => provider.close());

async function list(token: string | null, type: string, q: SourceListQuery = {}, base = provider.url) {
  const res = await fetch(`${base}/objects/${type}${sourceListSearch(q)}`, token === null ? {} : { headers: { authorization: `Bearer ${token}` } });
  const body: unknown = await res.json();
  return { res, body, page: res.status === 200 ? SourceListPage.parse(body) : undefined };
}

async function listAll(token: string, type: string, q: SourceListQuery = {}) {
  const out: SourceRecord[] = [];
  let cursor: string | undefined;
  let pages = 0;
  for (;;) {
    const { page } = await list(token, type, { ...q, ...(cursor ? { cursor } : {}) });
    if (!page) throw new Error('list failed');
    pages++;
    out.push(...page.data);
    if (!page.next_cursor) return { records: out, pages };
    cursor = page.next_cursor;
  }
}

async function control(method: string, p: string, body?: unknown, base = provider.url) {
  const res = await fetch(`${base}/_control${p}`, { method, ...(body !== undefined ? { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } } : {}) });
  return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, unknown> };
}

const allRecords = async (token: string, type: string) => (await control('GET', `/accounts/${token}/objects/${type}/records`)).body.data as SourceRecord[];
const byOrder = (a: SourceRecord, b: SourceRecord) => (a.updated_at < b.updated_at ? -1 : a.updated_at > b.updated_at ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

describe('seeded accounts', () => {
  it('gives the same token the same data in another instance, and another token other data', async () => {
    const other = await startProvider('127.0.0.1', 0);
    try {
      for (const type of ['crm_contact', 'crm_deal', 'crm_company', 'hris_employee']) {
        const a = await list('acme', type, { limit: 1000 });
        const b = await list('acme', type, { limit: 1000 }, other.url);
        expect(a.page?.data).toHaveLength(25);
        expect(b.page?.data).toEqual(a.page?.data);
      }
      const c = await list('globex', 'crm_contact', { limit: 1000 });
      const a = await list('acme', 'crm_contact', { limit: 1000 });
      expect(c.page?.data.map((r) => r.id)).not.toEqual(a.page?.data.map((r) => r.id));
    } finally {
      await other.close();
    }
  });

  it('seeds plausible records: ordered, in the past 30 days, with relations and a raw vendor shape', async () => {
    const token = freshToken();
    const companies = (await list(token, 'crm_company', { limit: 1000 })).page?.data ?? [];
    const contacts = (await list(token, 'crm_contact', { limit: 1000 })).page?.data ?? [];
    expect([...contacts].sort(byOrder)).toEqual(contacts);
    const companyIds = new Set(companies.map((c) => c.id));
    const now = Date.now();
    for (const c of contacts) {
      expect(c).toMatchObject({ deleted_at: null, name: expect.any(String), owner_id: expect.stringMatching(/^usr_/), type: expect.any(String) });
      expect(c.emails).toEqual(expect.arrayContaining([expect.objectContaining({ email: expect.stringContaining('@'), type: 'work' })]));
      if (c.company_id !== null) expect(companyIds.has(c.company_id as string)).toBe(true);
      expect(c.raw).toMatchObject({ object: 'contact', properties: expect.any(Object) });
      expect(Date.parse(c.updated_at)).toBeGreaterThanOrEqual(Date.parse(c.created_at));
      expect(Date.parse(c.updated_at)).toBeLessThan(now);
      expect(Date.parse(c.created_at)).toBeGreaterThan(now - 32 * 86_400_000);
    }
    const deal = (await list(token, 'crm_deal', { limit: 1 })).page?.data[0];
    expect(deal).toMatchObject({ name: expect.any(String), amount: expect.any(Number), stage: expect.any(String), owner_id: expect.any(String) });
    const emp = (await list(token, 'hris_employee', { limit: 1 })).page?.data[0];
    expect(emp).toMatchObject({ name: expect.any(String), department: expect.any(String), employment_status: expect.any(String) });
  });

  it('answers 401 without a bearer token and 404 for an unknown object type', async () => {
    const none = await list(null, 'crm_contact');
    expect(none.res.status).toBe(401);
    const malformed = await fetch(`${provider.url}/objects/crm_contact`, { headers: { authorization: 'Basic abc' } });
    expect(malformed.status).toBe(401);
    const unknown = await list(freshToken(), 'crm_widget');
    expect(unknown.res.status).toBe(404);
    expect(unknown.body).toMatchObject({ error: 'not_found' });
  });
});

describe('listing', () => {
  it('pages through every record exactly once, in (updated_at, id) order', async () => {
    const token = freshToken();
    const { records, pages } = await listAll(token, 'crm_contact', { limit: 7 });
    expect(pages).toBe(4); // 7 + 7 + 7 + 4
    const all = await allRecords(token, 'crm_contact');
    expect(records.map((r) => r.id)).toEqual(all.map((r) => r.id));
    expect(new Set(records.map((r) => r.id)).size).toBe(25);
    expect([...records].sort(byOrder)).toEqual(records);

    // A bigger account, recreated with more seeded records.
    const big = freshToken();
    expect((await control('PUT', `/accounts/${big}`, { records: 2000 })).body).toMatchObject({ objects: { crm_deal: 2000 } });
    const many = await listAll(big, 'crm_deal', { limit: 333 });
    expect(many.pages).toBe(7);
    expect(new Set(many.records.map((r) => r.id)).size).toBe(2000);
    expect([...many.records].sort(byOrder)).toEqual(many.records);
  });

  it('keeps updated_gte inclusive and combines it with the cursor', async () => {
    const token = freshToken();
    const all = await allRecords(token, 'crm_company');
    const pivot = all[10] as SourceRecord;
    const expected = all.filter((r) => r.updated_at >= pivot.updated_at);
    const { records } = await listAll(token, 'crm_company', { updated_gte: pivot.updated_at, limit: 4 });
    expect(records.map((r) => r.id)).toEqual(expected.map((r) => r.id));
    expect(records[0]?.updated_at).toBe(pivot.updated_at);
    const later = new Date(Date.parse(pivot.updated_at) + 1).toISOString();
    const after = await list(token, 'crm_company', { updated_gte: later, limit: 1000 });
    expect(after.page?.data.map((r) => r.id)).toEqual(all.filter((r) => r.updated_at >= later).map((r) => r.id));
  });

  it('projects fields, always keeping id and the timestamps', async () => {
    const { page } = await list(freshToken(), 'crm_contact', { fields: 'name,raw', limit: 3 });
    for (const r of page?.data ?? []) expect(Object.keys(r).sort()).toEqual(['created_at', 'deleted_at', 'id', 'name', 'raw', 'updated_at']);
    const { page: bare } = await list(freshToken(), 'crm_deal', { fields: 'nothing_here', limit: 1 });
    expect(Object.keys(bare?.data[0] ?? {}).sort()).toEqual(['created_at', 'deleted_at', 'id', 'updated_at']);
  });

  it('filters by string equality and refuses filters the type does not have', async () => {
    const token = freshToken();
    const all = await allRecords(token, 'crm_contact');
    const owner = all[0]?.owner_id as string;
    const { records } = await listAll(token, 'crm_contact', { filter: { owner_id: owner }, limit: 2 });
    expect(records.length).toBeGreaterThan(0);
    expect(records.map((r) => r.id)).toEqual(all.filter((r) => r.owner_id === owner).map((r) => r.id));
    const two = await list(token, 'crm_contact', { filter: { owner_id: owner, type: all[0]?.type as string }, limit: 1000 });
    expect(two.page?.data.map((r) => r.id)).toEqual(all.filter((r) => r.owner_id === owner && r.type === all[0]?.type).map((r) => r.id));
    const deals = await list(token, 'crm_deal', { filter: { amount: 'not-a-number' } });
    expect(deals.page?.data).toEqual([]);
    expect(deals.page?.next_cursor ?? null).toBeNull();

    const bad = await list(token, 'crm_contact', { filter: { favourite_colour: 'blue' } });
    expect(bad.res.status).toBe(400);
    expect(bad.body).toMatchObject({ error: 'unsupported_filter' });
    const badCursor = await list(token, 'crm_contact', { cursor: 'garbage' });
    expect(badCursor.res.status).toBe(400);
    const badLimit = await fetch(`${provider.url}/objects/crm_contact?limit=5000`, { headers: { authorization: `Bearer ${token}` } });
    expect(badLimit.status).toBe(400);
  });
});

describe('changes', () => {
  it('creates, updates and deletes records; tombstones stay listed', async () => {
    const token = freshToken();
    const created = await control('POST', `/accounts/${token}/objects/crm_contact/records`, { name: 'Test Person', type: 'lead', owner_id: 'usr_009' });
    expect(created.status).toBe(201);
    const rec = SourceRecord.parse(created.body);
    expect(rec).toMatchObject({ name: 'Test Person', deleted_at: null });
    expect(rec.created_at).toBe(rec.updated_at);

    const updated = await control('PATCH', `/accounts/${token}/objects/crm_contact/records/${rec.id}`, { type: 'customer' });
    expect(updated.body).toMatchObject({ id: rec.id, name: 'Test Person', type: 'customer', created_at: rec.created_at });
    expect(updated.body.updated_at as string > rec.updated_at).toBe(true);

    const deleted = await control('DELETE', `/accounts/${token}/objects/crm_contact/records/${rec.id}`);
    expect(deleted.status).toBe(200);
    const tomb = SourceRecord.parse(deleted.body);
    expect(tomb.deleted_at).toBeTruthy();
    expect(tomb.updated_at >= (tomb.deleted_at as string)).toBe(true);

    // Listed by updated_gte, last, as a tombstone.
    const { page } = await list(token, 'crm_contact', { updated_gte: rec.created_at });
    expect(page?.data.map((r) => r.id)).toEqual([rec.id]);
    expect(page?.data[0]).toMatchObject({ deleted_at: tomb.deleted_at, name: 'Test Person' });
    // The control listing shows it too.
    const all = await allRecords(token, 'crm_contact');
    expect(all).toHaveLength(26);
    expect(all.at(-1)).toMatchObject({ id: rec.id, deleted_at: tomb.deleted_at });
    // Tombstones cannot change; unknown ids are 404.
    expect((await control('PATCH', `/accounts/${token}/objects/crm_contact/records/${rec.id}`, { type: 'x' })).status).toBe(409);
    expect((await control('PATCH', `/accounts/${token}/objects/crm_contact/records/nope`, { type: 'x' })).status).toBe(404);
  });

  it('touch moves only updated_at', async () => {
    const token = freshToken();
    const before = (await allRecords(token, 'crm_deal'))[0] as SourceRecord;
    const touched = await control('PUT', `/accounts/${token}/objects/crm_deal/records/${before.id}/touch`);
    expect(touched.status).toBe(200);
    const after = SourceRecord.parse(touched.body);
    expect(after.updated_at > before.updated_at).toBe(true);
    expect({ ...after, updated_at: before.updated_at }).toEqual(before);
    const last = (await allRecords(token, 'crm_deal')).at(-1);
    expect(last).toEqual(after);
  });

  it('gives every change an updated_at strictly after the last one, even when the clock stands still', async () => {
    const frozen = Date.parse('2030-01-01T00:00:00.000Z');
    const p = await startProvider('127.0.0.1', 0, { now: () => frozen, records: 3 });
    try {
      const stamps: string[] = [];
      for (let i = 0; i < 5; i++) {
        const r = p.createRecord('t', 'crm_company', { name: `c${i}` });
        if (!r.ok) throw new Error(r.message);
        stamps.push(r.record.updated_at);
        const first = p.records('t', 'crm_deal')[0] as SourceRecord;
        const u = p.updateRecord('t', 'crm_deal', first.id, { stage: 'proposal' });
        if (!u.ok) throw new Error(u.message);
        stamps.push(u.record.updated_at);
      }
      expect(stamps[0]).toBe('2030-01-01T00:00:00.000Z');
      for (let i = 1; i < stamps.length; i++) expect(Date.parse(stamps[i] as string) - Date.parse(stamps[i - 1] as string)).toBe(1);
    } finally {
      await p.close();
    }
  });

  it('generates changes at about the configured rate', async () => {
    const p = await startProvider('127.0.0.1', 0, { generatorTickMs: 25, records: 50 });
    try {
      const tokens = ['g1', 'g2'];
      for (const t of tokens) p.records(t, 'crm_company'); // creates the accounts
      const set = await control('POST', '/generator', { creates_per_min: 1200, updates_per_min: 600, deletes_per_min: 300 }, p.url);
      expect(set.body).toMatchObject({ creates_per_min: 1200 });
      const started = Date.now();
      await new Promise((r) => setTimeout(r, 1000));
      await control('POST', '/generator', { creates_per_min: 0, updates_per_min: 0, deletes_per_min: 0 }, p.url);
      const seconds = (Date.now() - started) / 1000;
      const { generated } = p.stats();
      // 2 accounts × 20 creates/s; generous bounds for a loaded machine.
      expect(generated.creates).toBeGreaterThanOrEqual(Math.floor(2 * 20 * seconds * 0.5));
      expect(generated.creates).toBeLessThanOrEqual(Math.ceil(2 * 20 * seconds * 1.5) + 2);
      expect(generated.updates).toBeGreaterThan(0);
      expect(generated.deletes).toBeGreaterThan(0);
      // The changes are visible: new records, tombstones, and a listing still in order.
      const all = ['crm_company', 'crm_contact', 'crm_deal', 'hris_employee'].flatMap((type) => p.records('g1', type).map((r) => ({ ...r, type })));
      expect(all.length).toBeGreaterThan(200);
      expect(all.some((r) => r.deleted_at)).toBe(true);
      for (const type of ['crm_company', 'crm_contact']) {
        const recs = p.records('g2', type);
        expect([...recs].sort(byOrder)).toEqual(recs);
      }
      const after = p.stats().generated;
      await new Promise((r) => setTimeout(r, 200));
      expect(p.stats().generated).toEqual(after); // stopped
    } finally {
      await p.close();
    }
  });
});

describe('behaviour, request log and statistics', () => {
  it('fails N times then answers 200; 429 carries Retry-After; only for the given token', async () => {
    const token = freshToken();
    const other = freshToken();
    await control('POST', '/behaviour', { token, status: 500, times: 2 });
    expect((await list(token, 'crm_contact')).res.status).toBe(500);
    expect((await list(other, 'crm_contact')).res.status).toBe(200);
    expect((await list(token, 'crm_contact')).res.status).toBe(500);
    expect((await list(token, 'crm_contact')).res.status).toBe(200);

    await control('POST', '/behaviour', { token, status: 429, retry_after: '7' });
    const limited = await list(token, 'crm_contact');
    expect(limited.res.status).toBe(429);
    expect(limited.res.headers.get('retry-after')).toBe('7');
    expect((await list(token, 'crm_contact')).res.status).toBe(429); // until cleared
    await control('DELETE', '/behaviour');
    expect((await list(token, 'crm_contact')).res.status).toBe(200);

    await control('POST', '/behaviour', { failure_rate: 1, status: 503, retry_after: '1' }); // every account
    expect((await list(other, 'crm_deal')).res.status).toBe(503);
    await control('POST', '/behaviour', { failure_rate: 0 });
    expect((await list(other, 'crm_deal')).res.status).toBe(200);
    await control('DELETE', '/behaviour');
    expect((await control('POST', '/behaviour', { status: 'x' })).status).toBe(400);
  });

  it('adds latency, logs requests with parsed filters, and counts concurrency per account', async () => {
    const token = freshToken();
    await control('POST', '/behaviour', { token, latency_ms: 400 });
    const started = Date.now();
    const answers = await Promise.all([1, 2, 3].map(() => list(token, 'crm_contact', { filter: { type: 'lead' }, limit: 5 })));
    expect(Date.now() - started).toBeGreaterThanOrEqual(380);
    expect(answers.every((a) => a.res.status === 200)).toBe(true);
    await control('DELETE', '/behaviour');

    const log = await control('GET', `/requests?token=${token}&object_type=crm_contact`);
    expect(log.body.count).toBe(3);
    expect((log.body.requests as unknown[])[0]).toMatchObject({ method: 'GET', path: '/objects/crm_contact', token, object_type: 'crm_contact', status: 200, query: { limit: '5', filter: { type: 'lead' } } });

    const stats = await control('GET', `/stats?token=${token}`);
    expect(stats.body.account).toMatchObject({ token, requests: 3, by_status: { '200': 3 }, in_flight: 0 });
    // Three requests sent at once with 400 ms latency overlap (at least two of them, on a busy machine).
    expect((stats.body.account as { max_concurrent: number }).max_concurrent).toBeGreaterThanOrEqual(2);
    expect(stats.body.max_concurrent_per_account as number).toBeGreaterThanOrEqual(2);
    expect(stats.body.requests as number).toBeGreaterThanOrEqual(3);
  });

  it('reset drops accounts, behaviour, the request log and statistics', async () => {
    const p = await startProvider('127.0.0.1', 0);
    try {
      const token = 'r1';
      p.createRecord(token, 'crm_company', { name: 'Extra' });
      p.setBehaviour(undefined, { status: 500 });
      expect((await list(token, 'crm_company', {}, p.url)).res.status).toBe(500);
      expect((await control('POST', '/reset', {}, p.url)).status).toBe(200);
      expect(p.stats()).toMatchObject({ requests: 0, accounts: 0 });
      expect(p.requests()).toEqual([]);
      const again = await list(token, 'crm_company', { limit: 1000 }, p.url);
      expect(again.res.status).toBe(200);
      expect(again.page?.data).toHaveLength(25); // the extra record is gone
    } finally {
      await p.close();
    }
  });
});

describe('process', () => {
  it('runs as `node dist/main.js`, logs its URL, answers, and exits 0 on SIGTERM', async () => {
    const entry = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../dist/main.js');
    const { child, lines, waitFor } = spawnLogged(entry, { MOCK_PROVIDER_PORT: '0', MOCK_PROVIDER_RECORDS: '5', LOG_LEVEL: 'info' });
    try {
      const url = (await waitFor('mock provider listening')).url as string | undefined;
      expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      const { page } = await list('proc', 'hris_employee', {}, url);
      expect(page?.data).toHaveLength(5);
      const [exit] = await Promise.all([once(child, 'exit'), Promise.resolve(child.kill('SIGTERM'))]);
      expect(exit[0]).toBe(0);
      expect(lines.map((l) => l.msg)).toContain('stopped');
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });
});
