/**
 * Shared pieces of the virtual-webhook tests: a stack (API + worker processes) with
 * compressed polling, the mock provider in-process, and helpers to read what arrived.
 */
import { randomUUID } from 'node:crypto';
import { startProvider, type MockProvider } from '@hookpost/mock-provider';
import { expect } from 'vitest';
import { eventually, startStack, type Stack, type StackOptions } from './stack.js';

/** Minutes: 0.005 = 300 ms. */
export const FAST = 0.005;

export const VIRTUAL_ENV: Record<string, string> = {
  MIN_INTERVAL_MINUTES: '0.001',
  POLL_JITTER: '0',
  POLL_OVERLAP_MS: '2000',
  POLL_CONNECTION_RPS: '200',
  POLL_FAILURE_THRESHOLD: '2',
  POLL_AUTH_RETRY_MS: '300000',
  POLL_LEASE_MS: '3000',
  POLL_REQUEST_TIMEOUT_MS: '5000',
};

export interface Body {
  type: string;
  data: Record<string, unknown>[];
}

export interface Run {
  id: string;
  trigger: string;
  status: string;
  started_at: string;
  error_class?: string;
  error?: string;
  changes?: number;
}

export interface VirtualKit {
  stack: Stack;
  provider: MockProvider;
  close(): Promise<void>;
  bodies(path: string): Body[];
  /** Record ids that arrived at `path` (of one payload type), in arrival order. */
  ids(path: string, type?: string): string[];
  connection(token: string): Promise<string>;
  webhook(connectionId: string, path: string, extra?: Record<string, unknown>, includeAll?: boolean): Promise<string>;
  runs(webhookId: string): Promise<Run[]>;
  /** Waits for `n` runs with `status` that started after `since`. */
  runsAfter(webhookId: string, since: number, n?: number, status?: string): Promise<Run[]>;
  /** Creates a crm_contact at the provider; returns its id. */
  created(token: string, fields?: Record<string, unknown>): string;
}

export async function startVirtualKit(o: StackOptions & { providerRecords?: number } = {}): Promise<VirtualKit> {
  const [stack, provider] = await Promise.all([
    startStack({ ...o, env: { ...VIRTUAL_ENV, ...o.env }, workers: o.workers ?? 1 }),
    startProvider('127.0.0.1', 0, { records: o.providerRecords ?? 5 }),
  ]);
  const bodies = (path: string): Body[] => stack.receiver.deliveries().filter((d) => d.path === path).map((d) => d.body as Body);
  const runs = async (webhookId: string): Promise<Run[]> => {
    const res = await stack.call('GET', `/unified/webhook/${webhookId}`);
    return ((res.body.runs ?? []) as string[]).map((l) => JSON.parse(l) as Run);
  };
  return {
    stack,
    provider,
    async close() {
      await stack.close();
      await provider.close();
    },
    bodies,
    ids: (path, type) =>
      bodies(path)
        .filter((b) => type === undefined || b.type === type)
        .flatMap((b) => b.data.map((r) => String(r.id))),
    async connection(token) {
      const res = await stack.call('POST', '/unified/connection', {
        integration_type: 'mockcrm',
        categories: ['crm'],
        permissions: [],
        auth: { api_url: provider.url, access_token: token },
      });
      expect(res.status).toBe(200);
      return res.body.id as string;
    },
    async webhook(connectionId, path, extra = {}, includeAll = false) {
      const res = await stack.call('POST', `/unified/webhook${includeAll ? '?include_all=true' : ''}`, {
        connection_id: connectionId,
        object_type: 'crm_contact',
        event: 'created',
        hook_url: `${stack.receiver.url}${path}`,
        interval: FAST,
        ...extra,
      });
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      stack.receiver.addSecret((await stack.call('GET', `/v1/webhooks/${res.body.id}/secret`)).body.secret);
      return res.body.id as string;
    },
    runs,
    runsAfter: (webhookId, since, n = 1, status = 'completed') =>
      eventually(async () => {
        const done = (await runs(webhookId)).filter((r) => r.status === status && Date.parse(r.started_at) > since);
        return done.length >= n ? done : undefined;
      }, 20_000, `${n} ${status} run(s) of ${webhookId}`),
    created(token, fields = {}) {
      const r = provider.createRecord(token, 'crm_contact', { name: `Person ${randomUUID().slice(0, 6)}`, ...fields });
      if (!r.ok) throw new Error(r.message);
      return r.record.id;
    },
  };
}
