import { z } from 'zod';
import { HttpUrl, IsoDateTime, Uuid, pageLimit, queryBoolean } from '../common.js';
import { EventType } from '../event-types.js';

/** Body of POST /webhook. Omitted or empty `event_types` subscribes to every event type. */
export const TrutoWebhookCreate = z.object({
  target_url: HttpUrl,
  is_active: z.boolean().optional(),
  event_types: z.array(EventType).max(100).optional(),
  environment_id: Uuid.optional(),
});
export type TrutoWebhookCreate = z.infer<typeof TrutoWebhookCreate>;

/** Body of PATCH /webhook/{id}: fields left out keep their value. */
export const TrutoWebhookUpdate = z.object({
  target_url: HttpUrl.optional(),
  is_active: z.boolean().optional(),
  event_types: z.array(EventType).max(100).optional(),
});
export type TrutoWebhookUpdate = z.infer<typeof TrutoWebhookUpdate>;

/** A webhook as the Truto face shows it. `secret` appears only in the create response. */
export const TrutoWebhook = z.object({
  id: Uuid,
  target_url: z.string(),
  is_active: z.boolean(),
  environment_id: Uuid,
  /** Canonical event types; empty means every event type. */
  event_types: z.array(z.string()),
  created_at: IsoDateTime,
  updated_at: IsoDateTime,
});
export type TrutoWebhook = z.infer<typeof TrutoWebhook>;

export const TrutoWebhookWithSecret = TrutoWebhook.extend({ secret: z.string() });
export type TrutoWebhookWithSecret = z.infer<typeof TrutoWebhookWithSecret>;

export const TrutoWebhookListQuery = z.object({
  limit: pageLimit.optional(),
  next_cursor: z.string().max(200).optional(),
  is_active: queryBoolean.optional(),
  environment_id: Uuid.optional(),
});
export type TrutoWebhookListQuery = z.infer<typeof TrutoWebhookListQuery>;

export const TrutoWebhookList = z.object({
  result: z.array(TrutoWebhook),
  next_cursor: z.string().nullable(),
});
export type TrutoWebhookList = z.infer<typeof TrutoWebhookList>;

export const TrutoWebhookTestRequest = z.object({ id: Uuid });
export const TrutoWebhookTestResult = z.object({ success: z.boolean() });
