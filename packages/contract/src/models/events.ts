import { z } from 'zod';
import { IsoDateTime, Uuid, pageLimit, queryDate } from '../common.js';
import { EventType } from '../event-types.js';
import { ObjectType } from './unified-webhook.js';

/**
 * Any JSON object, passed through as parsed. `metaOpenApi` is what @ts-rest/open-api's schema
 * generator (@anatine/zod-openapi) reads for a schema it cannot describe itself.
 */
function JsonObject() {
  const schema = z.custom<Record<string, unknown>>((v) => typeof v === 'object' && v !== null && !Array.isArray(v), { message: 'Expected a JSON object' });
  return Object.assign(schema, { metaOpenApi: { type: 'object', additionalProperties: {}, nullable: false } });
}

/**
 * One event the host product publishes. `data` is the record (for record:* events) or the
 * event's payload: any JSON object, kept as parsed (not copied key by key, which dropped a
 * `__proto__` key and cost a walk of every record).
 */
export const EventIn = z.object({
  /** Your id for the event: a repeat within the workspace is the same event and creates nothing. */
  id: z.string().min(1).max(255).optional(),
  type: EventType,
  object_type: ObjectType.optional(),
  connection_id: Uuid.optional(),
  /** Defaults to the API key's environment, else the workspace's default. */
  environment_id: Uuid.optional(),
  data: JsonObject(),
});
export type EventIn = z.infer<typeof EventIn>;

export const MAX_EVENTS_PER_BATCH = 1000;

export const EventBatchIn = z.object({
  events: z.array(EventIn).min(1, 'must hold at least one event').max(MAX_EVENTS_PER_BATCH, `at most ${MAX_EVENTS_PER_BATCH} events`),
});

export const EventAccepted = z.object({
  /** Hookpost's id of the stored event (the first one's, for a repeat). */
  id: Uuid,
  external_id: z.string().optional(),
  /** How many webhooks it fanned out to. */
  deliveries: z.number().int(),
  /** True when this repeats an event already accepted (same `id`). */
  duplicate: z.boolean(),
});
export type EventAccepted = z.infer<typeof EventAccepted>;

export const EventBatchAccepted = z.object({ events: z.array(EventAccepted) });

export const IngestHeaders = z.object({
  /** A repeat of a request with the same key gets the first answer and changes nothing. */
  'idempotency-key': z.string().min(1).max(255).optional(),
});

export const DELIVERY_STATUSES = ['pending', 'delivering', 'succeeded', 'dead', 'held'] as const;
export const DeliveryStatus = z.enum(DELIVERY_STATUSES);

export const Delivery = z.object({
  id: Uuid,
  webhook_id: Uuid,
  event_id: Uuid.optional(),
  kind: z.enum(['event', 'test', 'virtual']),
  /** pending (waiting or retrying), delivering, succeeded, dead (gave up), held (webhook paused/disabled). */
  status: DeliveryStatus,
  attempts: z.number().int(),
  next_attempt_at: IsoDateTime.optional(),
  last_status_code: z.number().int().optional(),
  last_error: z.string().optional(),
  replay_of: Uuid.optional(),
  created_at: IsoDateTime,
  updated_at: IsoDateTime,
  finished_at: IsoDateTime.optional(),
});
export type Delivery = z.infer<typeof Delivery>;

const statusList = z
  .string()
  .transform((v) => v.split(',').map((s) => s.trim()).filter(Boolean))
  .pipe(z.array(DeliveryStatus));

export const DeliveryListQuery = z.object({
  /** Comma-separated statuses. */
  status: statusList.optional(),
  since: queryDate.optional(),
  until: queryDate.optional(),
  limit: pageLimit.optional(),
  next_cursor: z.string().max(200).optional(),
});

export const DeliveryList = z.object({ result: z.array(Delivery), next_cursor: z.string().nullable() });

export const Attempt = z.object({
  id: z.number().int(),
  delivery_id: Uuid,
  attempt: z.number().int(),
  started_at: IsoDateTime,
  duration_ms: z.number().int(),
  status_code: z.number().int().optional(),
  /** `success`, `http_<code>`, `timeout`, `connect_error`, `network_error`, `blocked_address`, `invalid_url`, `secret_unreadable` (not sent: its webhook's secret could not be decrypted). */
  outcome: z.string(),
  error: z.string().optional(),
  /** The first 4 KB of the response body. */
  response_snippet: z.string().optional(),
  /** What was sent (no secrets: signatures only). */
  request_headers: z.record(z.string()),
});
export type Attempt = z.infer<typeof Attempt>;

export const WebhookSecret = z.object({
  /**
   * Signs every delivery: Standard Webhooks (`whsec_…`), unified.to `sig`/`sig256` and
   * `X-Truto-Signature` (those two once a rotation's overlap has ended).
   */
  secret: z.string(),
  /**
   * During a rotation overlap, the previous secret: Standard Webhooks headers carry a signature
   * with each; `sig`/`sig256` and `X-Truto-Signature`, which hold one, are made with this one
   * until `previous_secret_expires_at`.
   */
  previous_secret: z.string().optional(),
  previous_secret_expires_at: IsoDateTime.optional(),
});

export const RotateSecretRequest = z.object({
  /** How long the old secret keeps signing too (default: SECRET_ROTATION_OVERLAP_SECONDS). */
  overlap_seconds: z.number().int().min(0).max(30 * 86400).optional(),
});

export const ReplayWebhookRequest = z.object({
  /**
   * Replays failed deliveries created at or after this time: dead ones not replayed yet get a
   * copy; retrying ones are sent now. The forms of the deliveries list's `since` (a date,
   * midnight UTC, or a date-time, UTC without an offset).
   */
  since: queryDate,
  limit: z.number().int().min(1).max(10_000).optional(),
});

/**
 * What a replay will send: copies of finished deliveries (new ids, `replay_of` set) and, for a
 * delivery still waiting for a retry, that delivery itself (made due now, its id kept).
 */
export const ReplayResult = z.object({ count: z.number().int(), deliveries: z.array(Uuid) });
