import { describe, expect, it } from 'vitest';
import {
  generateWebhookSecret,
  signStandardHeaders,
  standardSignature,
  trutoSignature,
  unifiedSignatures,
  verifyStandard,
  verifyTruto,
  verifyUnified,
} from '../src/signing.js';
import { createHmac } from 'node:crypto';

describe('Standard Webhooks', () => {
  // Published test vectors (standard-webhooks libraries).
  it('matches vector A', () => {
    expect(standardSignature('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_p5jXN8AQM9LWM0D4loKWxJek', 1614265330, '{"test": 2432232314}')).toBe(
      'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=',
    );
  });
  it('matches vector B', () => {
    expect(
      standardSignature('whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD', 'msg_27UH4WbU6Z5A5EzD8u03UvzRbpk', 1649367553, '{"email":"test@example.com","username":"test_user"}'),
    ).toBe('v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=');
  });
  it('verifies its own headers, with several secrets during rotation, and rejects tampering', () => {
    const [oldSecret, newSecret] = [generateWebhookSecret(), generateWebhookSecret()];
    const now = Math.floor(Date.now() / 1000);
    const body = '{"hello":"world"}';
    const headers = signStandardHeaders([newSecret, oldSecret], 'msg_1', now, body);
    expect(headers['webhook-signature'].split(' ')).toHaveLength(2);
    expect(verifyStandard([oldSecret], headers, body)).toEqual({ ok: true });
    expect(verifyStandard([newSecret], headers, body)).toEqual({ ok: true });
    expect(verifyStandard([generateWebhookSecret()], headers, body).ok).toBe(false);
    expect(verifyStandard([newSecret], headers, body + ' ').ok).toBe(false);
    expect(verifyStandard([newSecret], { ...headers, 'webhook-id': 'msg_2' }, body).ok).toBe(false);
    expect(verifyStandard([newSecret], headers, body, { nowSeconds: now + 301 }).ok).toBe(false);
    expect(verifyStandard([newSecret], { 'webhook-id': 'x' }, body).ok).toBe(false);
  });
  it('refuses an empty whsec_ secret', () => {
    expect(() => standardSignature('whsec_', 'id', 1, 'b')).toThrow();
  });
});

describe('unified.to body signatures', () => {
  it('are hex HMAC-SHA1/SHA256 of JSON.stringify(data) + nonce, keyed with the secret string', () => {
    const data = [{ id: '1', name: 'Ada' }];
    const sigs = unifiedSignatures('whsec_abc', data, 'nonce-1');
    expect(sigs.sig256).toBe(createHmac('sha256', 'whsec_abc').update(JSON.stringify(data) + 'nonce-1').digest('hex'));
    expect(sigs.sig).toBe(createHmac('sha1', 'whsec_abc').update(JSON.stringify(data) + 'nonce-1').digest('hex'));
    expect(verifyUnified(['whsec_abc'], { data, nonce: 'nonce-1', ...sigs })).toEqual({ ok: true });
    expect(verifyUnified(['whsec_abc'], { data: [{ id: '2' }], nonce: 'nonce-1', ...sigs }).ok).toBe(false);
    expect(verifyUnified(['other'], { data, nonce: 'nonce-1', ...sigs }).ok).toBe(false);
    // A valid signature with anything after it is not that signature.
    expect(verifyUnified(['whsec_abc'], { data, nonce: 'nonce-1', sig: sigs.sig, sig256: `${sigs.sig256}zz` }).ok).toBe(false);
    expect(verifyUnified(['whsec_abc'], { data, nonce: 'nonce-1', sig: `${sigs.sig}00`, sig256: sigs.sig256 }).ok).toBe(false);
  });
});

describe('X-Truto-Signature', () => {
  it('is format=sha256,v=<base64 HMAC of the raw body>; verification accepts base64 or hex', () => {
    const body = '{"event":"record:created"}';
    const header = trutoSignature('secret-1', body);
    expect(header).toBe(`format=sha256,v=${createHmac('sha256', 'secret-1').update(body).digest('base64')}`);
    expect(verifyTruto(['secret-1'], header, body)).toEqual({ ok: true });
    const hex = `format=sha256,v=${createHmac('sha256', 'secret-1').update(body).digest('hex')}`;
    expect(verifyTruto(['secret-1'], hex, body)).toEqual({ ok: true });
    expect(verifyTruto(['secret-2'], header, body).ok).toBe(false);
    expect(verifyTruto(['secret-1'], header, body + 'x').ok).toBe(false);
    expect(verifyTruto(['secret-1'], `${header}!!junk`, body).ok).toBe(false);
    expect(verifyTruto(['secret-1'], `${hex}zz`, body).ok).toBe(false);
  });
});
