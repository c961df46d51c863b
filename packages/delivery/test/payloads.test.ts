/**
 * Rendering from a claimed event: the Truto/Hookpost envelope embeds the stored JSON as
 * is when nothing is projected out of it, and parses it when something is (fields, raw);
 * either way the body is the same JSON and every signature verifies.
 */
import { generateWebhookSecret, verifyStandard, verifyTruto, verifyUnified } from '@hookpost/contract/signing';
import type { ClaimedDelivery } from '@hookpost/db';
import { describe, expect, it } from 'vitest';
import { messageOf } from '../src/messages.js';
import { renderDelivery, type DeliveryTarget } from '../src/payloads.js';

const secret = generateWebhookSecret();
// A number past 2^53 on purpose: stored event data may hold one.
// eslint-disable-next-line no-loss-of-precision
const data = { id: 'c-1', name: 'Ada', big: 12345678901234567890, nested: { a: [1, 2] }, raw: { vendor: true } };

function claimed(json: unknown): ClaimedDelivery {
  const text = JSON.stringify(json);
  return {
    id: '0b2c4a57-6f4e-4c1e-9d7a-1f2e3d4c5b6a',
    webhook_id: 'w-1',
    event_id: 'e-1',
    kind: 'event',
    payload: null,
    attempts: 1,
    created_at: new Date('2026-12-01T00:00:00Z'),
    event_type: 'record:created',
    event_object_type: 'crm_contact',
    // As Postgres prints jsonb: spaces after separators.
    event_data_json: text.replace(/":/g, '": ').replace(/,"/g, ', "'),
    event_has_raw: typeof json === 'object' && json !== null && 'raw' in json,
    event_created_at: new Date('2026-12-01T00:00:01Z'),
    webhook_updated_at: new Date('2026-12-01T00:00:00Z'),
  };
}

function target(over: Partial<DeliveryTarget> = {}): DeliveryTarget {
  return { id: 'w-1', origin: 'truto', hookUrl: 'http://127.0.0.1:9/h', endpoint: 'http://127.0.0.1:9/h', environmentId: 'env-1', fields: null, includeRaw: false, secrets: [secret], ...over };
}

function render(t: DeliveryTarget, json: unknown = data) {
  const message = messageOf(claimed(json));
  const r = renderDelivery(t, message, Math.floor(Date.now() / 1000));
  expect(verifyStandard([secret], r.headers, r.body).ok).toBe(true);
  if (t.origin !== 'unified') expect(verifyTruto([secret], r.headers['x-truto-signature'], r.body).ok).toBe(true);
  return { ...r, parsed: JSON.parse(r.body) as Record<string, unknown> };
}

describe('renderDelivery from a stored event', () => {
  it('embeds the stored JSON as is when the webhook keeps raw and all fields', () => {
    const r = render(target({ includeRaw: true }));
    expect(r.body).toContain('"payload":{"id":"c-1","name":"Ada"');
    expect(r.parsed).toEqual({
      id: 'e-1',
      event: 'record:created',
      payload: data,
      environment_id: 'env-1',
      created_at: '2026-12-01T00:00:01.000Z',
      webhook_id: 'w-1',
    });
  });

  it('drops raw (parsing the record) unless the webhook includes it', () => {
    const r = render(target());
    const { raw: _raw, ...withoutRaw } = data;
    expect(r.parsed.payload).toEqual(withoutRaw);
  });

  it('embeds as is when there is no raw to drop', () => {
    const { raw: _raw, ...plain } = data;
    const r = render(target(), plain);
    expect(r.body).toContain('"payload":{"id":"c-1"');
    expect(r.parsed.payload).toEqual(plain);
  });

  it("writes the stored JSON compact, as JSON.stringify would: a receiver verifying a re-serialised body matches", () => {
    // Before, the envelope embedded Postgres's jsonb text, blanks after every `:` and `,`: a
    // receiver verifying over JSON.stringify(JSON.parse(body)) passed the test send (compact)
    // and failed every event. Blanks, quotes and backslashes inside strings stay.
    // Exactly as Postgres 15 prints this jsonb (keys in its order, a tab escaped).
    const stored = String.raw`{"id": "c-2", "tab": "\t", "list": [1, 2, {"k": "v"}], "none": null, "note": "a: b, c", "empty": {}, "quote": "say \"hi\", \\ ok"}`;
    const message = messageOf({ ...claimed({}), event_data_json: stored, event_has_raw: false });
    const r = renderDelivery(target(), message, Math.floor(Date.now() / 1000));
    expect(verifyTruto([secret], r.headers['x-truto-signature'], r.body).ok).toBe(true);
    expect((JSON.parse(r.body) as { payload: unknown }).payload).toEqual(JSON.parse(stored));
    expect(r.body).toContain(String.raw`"payload":{"id":"c-2","tab":"\t","list":[1,2,{"k":"v"}],"none":null,"note":"a: b, c","empty":{},"quote":"say \"hi\", \\ ok"}`);
    expect(JSON.stringify(JSON.parse(r.body))).toBe(r.body);
  });

  it('projects fields', () => {
    expect(render(target({ fields: 'name' })).parsed.payload).toEqual({ id: 'c-1', name: 'Ada' });
  });

  it('unified bodies parse the record and sign JSON.stringify(data) + nonce', () => {
    const r = render(target({ origin: 'unified', fields: 'name,nested' }));
    expect(r.parsed.data).toEqual([{ id: 'c-1', name: 'Ada', nested: { a: [1, 2] } }]);
    expect(verifyUnified([secret], r.parsed).ok).toBe(true);
  });
});

describe('renderDelivery during and after a rotation overlap', () => {
  const previous = 'whsec_cHJldmlvdXMtc2VjcmV0LWJ5dGVz';
  const until = Date.parse('2026-12-01T12:00:00Z');
  const rotated = (origin: DeliveryTarget['origin']) => target({ origin, secrets: [secret, previous], previousSecretUntil: until });
  const at = (ms: number, t: DeliveryTarget) => renderDelivery(t, messageOf(claimed(data)), Math.floor(ms / 1000));

  it('signs Standard Webhooks with both and the one-signature headers with the previous secret while it lasts', () => {
    const r = at(until - 1000, rotated('truto'));
    expect(r.headers['webhook-signature']?.split(' ')).toHaveLength(2);
    expect(verifyTruto([previous], r.headers['x-truto-signature'], r.body).ok).toBe(true);
  });

  it('a delivery rendered after the overlap ended (it waited in its endpoint\'s queue) is signed with the new secret only', () => {
    const r = at(until, rotated('truto'));
    expect(r.headers['webhook-signature']?.split(' ')).toHaveLength(1);
    expect(verifyStandard([previous], r.headers, r.body).ok).toBe(false);
    expect(verifyTruto([secret], r.headers['x-truto-signature'], r.body).ok).toBe(true);
  });
});
