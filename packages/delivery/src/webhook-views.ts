import { RECORD_EVENT_PREFIX, type TrutoWebhook, type UnifiedWebhook } from '@hookpost/contract';
import type { WebhookRun, WebhookWithEnv } from '@hookpost/db';
import { redactUrl } from './redact-url.js';

type OptionalKeys<T> = { [K in keyof T]-?: undefined extends T[K] ? K : never }[keyof T];
/** T, except that its optional fields may also be given as null. */
type Loose<T> = { [K in keyof T]: K extends OptionalKeys<T> ? T[K] | null : T[K] };

/** Drops undefined and null values: the unified.to SDK rejects `null` on optional fields. */
function compact<T extends object>(obj: Loose<T>): T {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined && v !== null)) as T;
}

const iso = (d: Date) => d.toISOString();

/** unified.to's `event` words from canonical types: `record:created` → `created`. */
function unifiedEvents(eventTypes: readonly string[]): string[] {
  return eventTypes.filter((t) => t.startsWith(RECORD_EVENT_PREFIX)).map((t) => t.slice(RECORD_EVENT_PREFIX.length));
}

/** One run as one line of JSON; newest first in `runs`. */
export function runLine(run: WebhookRun): string {
  return JSON.stringify(
    compact<Record<string, unknown>>({
      id: run.id,
      trigger: run.trigger,
      status: run.status,
      scheduled_at: run.scheduled_at ? iso(run.scheduled_at) : undefined,
      started_at: run.started_at ? iso(run.started_at) : undefined,
      finished_at: run.finished_at ? iso(run.finished_at) : undefined,
      pages: run.pages,
      records_seen: run.records_seen,
      changes: run.changes,
      deliveries: run.deliveries,
      error: run.error ?? undefined,
      error_class: run.error_class ?? undefined,
    }),
  );
}

/** Whether the unified.to face can show this webhook (its model requires these). */
export function isUnifiedShaped(row: WebhookWithEnv): boolean {
  return row.connection_id !== null && row.object_type !== null;
}

export function toUnifiedWebhook(row: WebhookWithEnv, runs: readonly WebhookRun[] = []): UnifiedWebhook {
  const events = unifiedEvents(row.event_types);
  return compact<UnifiedWebhook>({
    id: row.id,
    workspace_id: row.workspace_id,
    connection_id: row.connection_id ?? '',
    environment: row.environment_name,
    integration_type: row.integration_type,
    object_type: row.object_type ?? '',
    event: events[0] ?? 'updated',
    // More than one record type (set on the Truto face, say) only `events` can show: `event`
    // alone would read as one, and a read sent back whole would keep only that one.
    events: row.legacy_events || events.length > 1 ? events : undefined,
    hook_url: row.hook_url,
    interval: row.interval_minutes,
    page_max_limit: row.page_max_limit,
    filters: row.filters,
    fields: row.fields,
    include_raw: row.include_raw,
    webhook_type: row.webhook_type,
    db_type: row.db_type,
    // Masked again as shown: a mask stored by an older redactUrl may have missed a password.
    db_url: row.db_url_redacted === null ? null : redactUrl(row.db_url_redacted),
    db_schema: row.db_schema,
    db_name_prefix: row.db_name_prefix,
    is_healthy: row.is_healthy,
    is_paused: row.is_paused || !row.is_active,
    is_beta: row.is_beta,
    checked_at: row.checked_at ? iso(row.checked_at) : undefined,
    runs: runs.map(runLine),
    subscriptions: row.subscriptions.length ? row.subscriptions : undefined,
    meta: row.meta,
    created_at: iso(row.created_at),
    updated_at: iso(row.updated_at),
  });
}

export function toTrutoWebhook(row: WebhookWithEnv): TrutoWebhook {
  return {
    id: row.id,
    target_url: row.hook_url ?? '',
    is_active: row.is_active && !row.is_paused,
    environment_id: row.environment_id,
    event_types: row.event_types,
    created_at: iso(row.created_at),
    updated_at: iso(row.updated_at),
  };
}
