import { generateWebhookSecret, signStandardHeaders, trutoSignature, unifiedSignatures } from '@hookpost/contract/signing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startReceiver, type Receiver } from '../src/receiver.js';

const secret = generateWebhookSecret();
let receiver: Receiver;

beforeAll(async () => {
  receiver = await startReceiver('127.0.0.1', 0, { secrets: [secret] });
});
afterAll(async () => receiver.close());

async function post(path: string, body: string, headers: Record<string, string>) {
  return fetch(receiver.url + path, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } });
}

describe('mock receiver', () => {
  it('verifies Standard Webhooks, unified sig256 and Truto signatures and lists deliveries', async () => {
    const data = [{ id: 'c1', name: 'Ada' }];
    const body = JSON.stringify({ data, nonce: 'n1', ...unifiedSignatures(secret, data, 'n1'), type: 'VIRTUAL' });
    const now = Math.floor(Date.now() / 1000);
    const res = await post('/hooks/a', body, { ...signStandardHeaders([secret], 'msg_a', now, body), 'x-truto-signature': trutoSignature(secret, body) });
    expect(res.status).toBe(200);

    const bad = JSON.stringify({ hello: 'tampered' });
    await post('/hooks/b', bad, { ...signStandardHeaders([secret], 'msg_b', now, '{"hello":"original"}') });

    const list = (await (await fetch(`${receiver.url}/deliveries`)).json()) as { count: number; deliveries: { path: string; webhook_id: string; verified: boolean; signatures: Record<string, string> }[] };
    expect(list.count).toBe(2);
    expect(list.deliveries[0]).toMatchObject({ path: '/hooks/a', webhook_id: 'msg_a', verified: true, signatures: { standard: 'valid', unified: 'valid', truto: 'valid' } });
    expect(list.deliveries[1]).toMatchObject({ path: '/hooks/b', verified: false, signatures: { standard: 'invalid', unified: 'absent', truto: 'absent' } });

    const filtered = (await (await fetch(`${receiver.url}/deliveries?path=/hooks/a`)).json()) as { count: number };
    expect(filtered.count).toBe(1);
    const onlyBad = (await (await fetch(`${receiver.url}/deliveries?verified=false`)).json()) as { count: number };
    expect(onlyBad.count).toBe(1);
  });

  it('learns new secrets at runtime and forgets deliveries on DELETE', async () => {
    const later = generateWebhookSecret();
    const body = '{"x":1}';
    const headers = signStandardHeaders([later], 'msg_c', Math.floor(Date.now() / 1000), body);
    await post('/c', body, headers);
    expect(receiver.deliveries().at(-1)?.verified).toBe(false);
    await fetch(`${receiver.url}/_control/secrets`, { method: 'POST', body: JSON.stringify({ secret: later }) });
    await post('/c', body, headers);
    expect(receiver.deliveries().at(-1)?.verified).toBe(true);
    await fetch(`${receiver.url}/deliveries`, { method: 'DELETE' });
    expect(receiver.deliveries()).toHaveLength(0);
  });
});
