/**
 * What a delivery looks like on the wire, per face: the unified.to body
 * `{data[], webhook, nonce, sig, sig256, type, external_xref?}` or the Truto envelope
 * `{id, event, payload, environment_id, created_at, webhook_id}` + `X-Truto-Signature`.
 * Both carry Standard Webhooks headers, signed with every live secret.
 */
import { randomBytes } from 'node:crypto';
import { signStandardHeaders, stringifyExact, trutoSignature, unifiedSignatures, type UnifiedWebhook } from '@hookpost/contract';

export type UnifiedPayloadType = 'VIRTUAL' | 'NATIVE' | 'INITIAL-PARTIAL' | 'INITIAL-COMPLETE';

export interface DeliveryTarget {
  id: string;
  origin: 'unified' | 'truto' | 'hookpost';
  hookUrl: string;
  /**
   * The endpoint `hookUrl` names, as the worker's send caps count it (endpointOf): webhooks
   * with the same URL share one cap, however many there are.
   */
  endpoint: string;
  environmentId: string;
  /** Comma-separated field names to keep (`id` always kept); null keeps all. */
  fields: string | null;
  includeRaw: boolean;
  /** The current secret first, then any still inside its rotation overlap. */
  secrets: readonly string[];
  /**
   * When the previous secret's overlap ends (ms since the epoch), if `secrets` holds one: a
   * delivery rendered later (one that waited in its endpoint's queue) is signed without it.
   */
  previousSecretUntil?: number;
  /** The webhook as the unified.to face shows it: the `webhook` field of unified bodies. */
  unifiedView?: UnifiedWebhook;
  externalXref?: string;
}

/**
 * The endpoint a URL names, for counting sends to it: scheme, host, port and path; the query
 * and fragment are left out (they tell one subscriber's hooks apart, not one server's
 * handlers). Two webhooks of one receiver share a cap, so a slow receiver behind many
 * webhooks holds no more of a worker than behind one; different paths of one host (a
 * multi-tenant receiver's per-customer hooks) do not.
 */
export function endpointOf(hookUrl: string): string {
  try {
    const u = new URL(hookUrl);
    return `${u.origin}${u.pathname}`;
  } catch {
    return hookUrl;
  }
}

export interface OutgoingMessage {
  /** The delivery id: `webhook-id`, stable across retries. */
  deliveryId: string;
  eventId: string;
  /** Canonical event type (`record:created`), or `test`. */
  type: string;
  createdAt: Date;
  unifiedType: UnifiedPayloadType;
  /** Records for the unified body's `data[]`. */
  records: readonly Record<string, unknown>[];
  /** The Truto envelope's `payload`. */
  payload: unknown;
  /**
   * `payload` as JSON text, when the message has it (events: the stored jsonb). Embedded
   * as is when nothing is to be projected out of it, saving a parse and a re-serialisation.
   */
  payloadJson?: { text: string; hasRaw: boolean };
}

export const USER_AGENT = 'Hookpost/0.1 (+https://github.com/hookpost)';

/** Keeps the named fields (and `id`); drops `raw` unless asked for. */
export function projectRecord(record: Record<string, unknown>, fields: string | null, includeRaw: boolean): Record<string, unknown> {
  let out: Record<string, unknown> = record;
  if (fields) {
    const keep = new Set(fields.split(',').map((f) => f.trim()).filter(Boolean));
    keep.add('id');
    if (includeRaw) keep.add('raw');
    out = Object.fromEntries(Object.entries(record).filter(([k]) => keep.has(k)));
  }
  if (!includeRaw && 'raw' in out) {
    const { raw: _raw, ...rest } = out;
    out = rest;
  }
  return out;
}

export interface RenderedDelivery {
  body: string;
  headers: Record<string, string>;
}

/** The exact bytes and headers of one attempt. */
export function renderDelivery(target: DeliveryTarget, message: OutgoingMessage, nowSeconds: number): RenderedDelivery {
  // Standard Webhooks carries a signature per live secret (the new one first). The unified
  // `sig`/`sig256` and X-Truto-Signature hold one: they keep the previous secret while a
  // rotation's overlap lasts, so their receivers have until its end to take the new one.
  const secrets = target.previousSecretUntil !== undefined && nowSeconds * 1000 >= target.previousSecretUntil ? target.secrets.slice(0, 1) : target.secrets;
  const secret = secrets[secrets.length - 1];
  if (!secret) throw new Error(`webhook ${target.id} has no secret`);
  let body: string;
  const headers: Record<string, string> = { 'content-type': 'application/json', 'user-agent': USER_AGENT };
  if (target.origin === 'unified') {
    const data = message.records.map((r) => projectRecord(r, target.fields, target.includeRaw));
    const nonce = randomBytes(12).toString('hex');
    const { sig, sig256 } = unifiedSignatures(secret, data, nonce);
    body = stringifyExact({
      data,
      webhook: target.unifiedView ?? { id: target.id },
      nonce,
      sig,
      sig256,
      type: message.unifiedType,
      ...(target.externalXref ? { external_xref: target.externalXref } : {}),
    });
  } else {
    const head = `{"id":${JSON.stringify(message.eventId)},"event":${JSON.stringify(message.type)},"payload":`;
    const tail = `,"environment_id":${JSON.stringify(target.environmentId)},"created_at":"${message.createdAt.toISOString()}","webhook_id":${JSON.stringify(target.id)}}`;
    const stored = message.payloadJson;
    if (stored && !target.fields && (target.includeRaw || !stored.hasRaw)) {
      body = head + stored.text + tail;
    } else {
      const payload =
        message.payload !== null && typeof message.payload === 'object' && !Array.isArray(message.payload)
          ? projectRecord(message.payload as Record<string, unknown>, target.fields, target.includeRaw)
          : message.payload;
      body = head + stringifyExact(payload ?? null) + tail;
    }
    headers['x-truto-signature'] = trutoSignature(secret, body);
  }
  Object.assign(headers, signStandardHeaders(secrets, message.deliveryId, nowSeconds, body));
  return { body, headers };
}

/** Request headers as logged with an attempt: signatures are not secrets, but keep them short. */
export function loggableHeaders(headers: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, v.length > 300 ? `${v.slice(0, 300)}…` : v]));
}
