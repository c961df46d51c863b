import { parseExact } from '@hookpost/contract';
import type { ClaimedDelivery } from '@hookpost/db';
import type { OutgoingMessage, UnifiedPayloadType } from './payloads.js';

/** Body material stored on non-event deliveries (tests, virtual pages). */
export interface StoredPayload {
  type?: string;
  unified_type?: UnifiedPayloadType;
  records?: Record<string, unknown>[];
  payload?: unknown;
}

/** A JSON string token (kept as it is), or the blanks between tokens (dropped). */
const JSONB_BLANKS = /("(?:[^"\\]|\\.)*")|[ \t\r\n]+/g;

/**
 * Postgres's text of a jsonb value (`{"a": 1, "b": [2, 3]}`) without the blanks it writes
 * after `:` and `,`: the bytes JSON.stringify writes for the value it parses to. Signatures
 * are over the raw body either way, but receivers that verify over a re-serialised body
 * (`JSON.stringify(req.body)` after a JSON body parser, a common mistake) matched a test send
 * and failed on every event. Strings are copied as they are.
 */
export function compactJsonbText(text: string): string {
  return text.replace(JSONB_BLANKS, '$1');
}

/** The message a claimed delivery carries, whatever its kind. */
export function messageOf(d: ClaimedDelivery): OutgoingMessage {
  if (d.kind === 'event') {
    const json = d.event_data_json ?? '{}';
    let parsed: Record<string, unknown> | undefined;
    const data = () => (parsed ??= parseExact(json) as Record<string, unknown>);
    return {
      deliveryId: d.id,
      eventId: d.event_id ?? d.id,
      type: d.event_type ?? 'unknown',
      createdAt: d.event_created_at ?? d.created_at,
      unifiedType: 'NATIVE',
      // Parsed only when a face needs the object (unified bodies, projections).
      get records() {
        return [data()];
      },
      get payload() {
        return data();
      },
      payloadJson: { text: compactJsonbText(json), hasRaw: d.event_has_raw === true },
    };
  }
  const stored = (d.payload_json === null ? {} : parseExact(d.payload_json)) as StoredPayload;
  return {
    deliveryId: d.id,
    eventId: d.event_id ?? d.id,
    type: stored.type ?? d.kind,
    createdAt: d.created_at,
    unifiedType: stored.unified_type ?? 'VIRTUAL',
    records: stored.records ?? [],
    payload: stored.payload ?? stored.records ?? {},
  };
}
