/**
 * Signing and verification for the three signatures every Hookpost delivery carries:
 * Standard Webhooks headers, unified.to's body `sig`/`sig256`, and `X-Truto-Signature`.
 * Pure functions over node:crypto; safe to use in any receiver.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { stringifyAsParsed } from './exact-json.js';

export const SECRET_PREFIX = 'whsec_';
/** Standard Webhooks libraries reject timestamps further than this from now. */
export const DEFAULT_TOLERANCE_SECONDS = 5 * 60;

/** A new signing secret: `whsec_` + base64 of 24 random bytes. */
export function generateWebhookSecret(): string {
  return SECRET_PREFIX + randomBytes(24).toString('base64');
}

/** The HMAC key of a Standard Webhooks secret: base64-decoded after `whsec_`, else the raw bytes. */
export function standardKey(secret: string): Buffer {
  if (secret.startsWith(SECRET_PREFIX)) {
    const key = Buffer.from(secret.slice(SECRET_PREFIX.length), 'base64');
    if (key.length === 0) throw new Error('empty webhook secret');
    return key;
  }
  return Buffer.from(secret, 'utf8');
}

/** `v1,<base64 HMAC-SHA256(id.timestamp.body)>` */
export function standardSignature(secret: string, msgId: string, timestampSeconds: number, body: string | Buffer): string {
  const mac = createHmac('sha256', standardKey(secret));
  mac.update(`${msgId}.${timestampSeconds}.`);
  mac.update(body);
  return `v1,${mac.digest('base64')}`;
}

export interface StandardHeaders {
  'webhook-id': string;
  'webhook-timestamp': string;
  'webhook-signature': string;
}

/** Headers for one attempt, signed with every given secret (several during a rotation). */
export function signStandardHeaders(
  secrets: readonly string[],
  msgId: string,
  timestampSeconds: number,
  body: string | Buffer,
): StandardHeaders {
  if (secrets.length === 0) throw new Error('at least one secret is required');
  return {
    'webhook-id': msgId,
    'webhook-timestamp': String(timestampSeconds),
    'webhook-signature': secrets.map((s) => standardSignature(s, msgId, timestampSeconds, body)).join(' '),
  };
}

export type Verification = { ok: true } | { ok: false; reason: string };

function safeEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

function header(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const wanted = name.toLowerCase();
  for (const [k, v] of Object.entries(headers)) {
    if (k.toLowerCase() === wanted) return Array.isArray(v) ? v[0] : v;
  }
  return undefined;
}

/** Verifies Standard Webhooks headers against any of `secrets`, within the timestamp tolerance. */
export function verifyStandard(
  secrets: readonly string[],
  headers: Record<string, string | string[] | undefined>,
  body: string | Buffer,
  options: { toleranceSeconds?: number; nowSeconds?: number } = {},
): Verification {
  const id = header(headers, 'webhook-id');
  const ts = header(headers, 'webhook-timestamp');
  const sigs = header(headers, 'webhook-signature');
  if (!id || !ts || !sigs) return { ok: false, reason: 'missing webhook-id, webhook-timestamp or webhook-signature' };
  const timestamp = Number(ts);
  if (!Number.isInteger(timestamp)) return { ok: false, reason: 'webhook-timestamp is not an integer' };
  const now = options.nowSeconds ?? Math.floor(Date.now() / 1000);
  const tolerance = options.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS;
  if (Math.abs(now - timestamp) > tolerance) return { ok: false, reason: 'webhook-timestamp outside tolerance' };
  const offered = sigs
    .split(' ')
    .filter((s) => s.startsWith('v1,'))
    .map((s) => Buffer.from(s.slice(3), 'base64'));
  for (const secret of secrets) {
    const expected = Buffer.from(standardSignature(secret, id, timestamp, body).slice(3), 'base64');
    if (offered.some((o) => safeEqual(o, expected))) return { ok: true };
  }
  return { ok: false, reason: 'no signature matches' };
}

/** unified.to's body signatures: hex HMAC-SHA1/SHA256 of `JSON.stringify(data) + nonce`, keyed with the secret string. */
export function unifiedSignatures(secret: string, data: unknown, nonce: string): { sig: string; sig256: string } {
  // As a JavaScript receiver computes it from the data it parsed (numbers as doubles).
  const message = stringifyAsParsed(data) + nonce;
  return {
    sig: createHmac('sha1', secret).update(message).digest('hex'),
    sig256: createHmac('sha256', secret).update(message).digest('hex'),
  };
}

/** Verifies a unified-face payload's `sig256` (and `sig` when present) against any of `secrets`. */
export function verifyUnified(
  secrets: readonly string[],
  payload: { data?: unknown; nonce?: unknown; sig?: unknown; sig256?: unknown },
): Verification {
  if (typeof payload.nonce !== 'string' || typeof payload.sig256 !== 'string') {
    return { ok: false, reason: 'missing nonce or sig256' };
  }
  // Exactly hex digests: Buffer.from(…, 'hex') stops at the first bad character, so junk
  // after a valid signature would otherwise pass.
  if (!/^[0-9a-f]{64}$/i.test(payload.sig256) || (typeof payload.sig === 'string' && !/^[0-9a-f]{40}$/i.test(payload.sig))) {
    return { ok: false, reason: 'malformed sig or sig256' };
  }
  for (const secret of secrets) {
    const expected = unifiedSignatures(secret, payload.data, payload.nonce);
    const sha256Ok = safeEqual(Buffer.from(payload.sig256, 'hex'), Buffer.from(expected.sig256, 'hex'));
    const sha1Ok = typeof payload.sig !== 'string' || safeEqual(Buffer.from(payload.sig, 'hex'), Buffer.from(expected.sig, 'hex'));
    if (sha256Ok && sha1Ok) return { ok: true };
  }
  return { ok: false, reason: 'no signature matches' };
}

/** `X-Truto-Signature: format=sha256,v=<base64 HMAC-SHA256(body)>`, keyed with the secret string. */
export function trutoSignature(secret: string, body: string | Buffer): string {
  return `format=sha256,v=${createHmac('sha256', secret).update(body).digest('base64')}`;
}

/** Verifies `X-Truto-Signature`; accepts the `v=` value in base64 or hex. */
export function verifyTruto(secrets: readonly string[], signatureHeader: string | undefined, body: string | Buffer): Verification {
  if (!signatureHeader) return { ok: false, reason: 'missing x-truto-signature' };
  const parts = Object.fromEntries(
    signatureHeader.split(',').map((p) => {
      const i = p.indexOf('=');
      return [p.slice(0, i).trim(), p.slice(i + 1).trim()];
    }),
  );
  if (parts.format !== undefined && parts.format !== 'sha256') return { ok: false, reason: 'unsupported format' };
  const v = parts.v;
  if (!v) return { ok: false, reason: 'missing v=' };
  // Exactly one digest, hex or base64 (Buffer.from ignores characters it cannot read).
  const hex = /^[0-9a-f]{64}$/i.test(v);
  if (!hex && !/^[A-Za-z0-9+/]{43}=$/.test(v)) return { ok: false, reason: 'malformed v=' };
  const offered = hex ? Buffer.from(v, 'hex') : Buffer.from(v, 'base64');
  for (const secret of secrets) {
    if (safeEqual(offered, createHmac('sha256', secret).update(body).digest())) return { ok: true };
  }
  return { ok: false, reason: 'no signature matches' };
}
