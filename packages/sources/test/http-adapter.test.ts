/**
 * The built-in HTTP adapter against the mock provider (a real HTTP server): paging,
 * parameters on the wire, and how each kind of answer is classified.
 */
import { createAddressPolicy } from '@hookpost/delivery';
import { startProvider, type MockProvider } from '@hookpost/mock-provider';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { SourceError } from '../src/adapter.js';
import { HttpSourceAdapter } from '../src/http-adapter.js';

let provider: MockProvider;
const adapter = new HttpSourceAdapter({ policy: createAddressPolicy(['127.0.0.0/8']), timeoutMs: 2000, maxRetryAfterMs: 60_000 });
beforeAll(async () => {
  provider = await startProvider('127.0.0.1', 0, { records: 30 });
});
afterAll(async () => {
  await provider.close();
  await adapter.close();
});

const settings = (token: string) => ({ apiUrl: provider.url, token });
const list = (token: string, over: Partial<Parameters<HttpSourceAdapter['list']>[1]> = {}) =>
  adapter.list(settings(token), { objectType: 'crm_contact', limit: 7, filters: {}, ...over });

async function failure(p: Promise<unknown>): Promise<SourceError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(SourceError);
  return err as SourceError;
}

describe('HttpSourceAdapter', () => {
  test('pages through every record once, in order, sending limit, fields and filters', async () => {
    const seen: string[] = [];
    let cursor: string | undefined;
    for (let i = 0; i < 20; i++) {
      const page = await list('paging', { cursor });
      seen.push(...page.records.map((r) => r.id));
      if (!page.nextCursor) break;
      cursor = page.nextCursor;
    }
    const all = provider.records('paging', 'crm_contact').map((r) => r.id);
    expect(seen).toEqual(all);
    const owner = String(provider.records('paging', 'crm_contact')[0]?.owner_id);
    const filtered = await list('paging', { limit: 100, fields: ['name'], filters: { owner_id: owner }, updatedGte: new Date(0) });
    expect(filtered.records.length).toBeGreaterThan(0);
    for (const r of filtered.records) expect(Object.keys(r).sort()).toEqual(expect.arrayContaining(['id', 'name', 'updated_at']));
    const last = provider.requests({ token: 'paging' }).at(-1);
    expect(last?.query).toMatchObject({ limit: '100', fields: 'name', filter: { owner_id: owner } });
  });

  test('classifies answers: 401 auth, 5xx read, 429 throttled with Retry-After, 400 process, refused address read', async () => {
    provider.setBehaviour('bad', { status: 401, times: 1 });
    expect((await failure(list('bad'))).kind).toBe('auth');
    provider.setBehaviour('bad', { status: 502, times: 1 });
    expect((await failure(list('bad'))).kind).toBe('read');
    provider.setBehaviour('bad', { status: 429, retry_after: '7', times: 1 });
    const throttled = await failure(list('bad'));
    expect(throttled).toMatchObject({ kind: 'throttled', retryAfterMs: 7000 });
    // Retry-After: 0 (or a date already past) still waits a second, or the poller asked again at once, forever.
    provider.setBehaviour('bad', { status: 429, retry_after: '0', times: 1 });
    expect(await failure(list('bad'))).toMatchObject({ kind: 'throttled', retryAfterMs: 1000 });
    expect((await failure(list('bad', { filters: { no_such_field: 'x' } }))).kind).toBe('process');
    const strict = new HttpSourceAdapter({ policy: createAddressPolicy([]), timeoutMs: 2000 });
    expect((await failure(strict.list(settings('x'), { objectType: 'crm_contact', limit: 1, filters: {} }))).kind).toBe('read');
    await strict.close();
    expect((await failure(adapter.list({ apiUrl: provider.url }, { objectType: 'crm_contact', limit: 1, filters: {} }))).kind).toBe('auth');
  });
});
