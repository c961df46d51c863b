import { z } from 'zod';

/**
 * Canonical event types are `family:action` strings. This list is the known set
 * (Truto's documented enum plus the families the spec names); unknown but well-formed
 * types are stored as given, because the seeds mark these enums open.
 */
export const KNOWN_EVENT_TYPES = [
  'record:created',
  'record:updated',
  'record:deleted',
  'sync_job_run:created',
  'sync_job_run:updated',
  'sync_job_run:started',
  'sync_job_run:completed',
  'sync_job_run:failed',
  'sync_job_run:record',
  'sync_job_run:deleted',
  'sync_job_run:record_error',
  'sync_job_run:rate_limited',
  'integrated_account:created',
  'integrated_account:updated',
  'integrated_account:deleted',
  'integrated_account:active',
  'integrated_account:reactivated',
  'integrated_account:authentication_error',
  'integrated_account:post_install_error',
  'integrated_account:validation_error',
  'integrated_account:post_connect_form_submitted',
  'sync_job_cron_trigger:failed',
  'batch_job:dry_run_completed',
  'batch_job:completed',
  'batch_job:dry_run_failed',
  'batch_job:failed',
] as const;
export type KnownEventType = (typeof KNOWN_EVENT_TYPES)[number];

/** `family:action`, lower-case words with underscores. */
export const EventType = z
  .string()
  .max(100)
  .regex(/^[a-z][a-z0-9_]*:[a-z][a-z0-9_]*$/, 'must look like family:action (e.g. record:created)');
export type EventType = z.infer<typeof EventType>;

/** The unified.to face's `event` values map onto `record:<event>`. */
export const RECORD_EVENT_PREFIX = 'record:';
export const recordEventType = (event: string): string => `${RECORD_EVENT_PREFIX}${event}`;
