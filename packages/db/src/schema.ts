import type { ColumnType, Generated, Insertable, JSONColumnType, Selectable, Updateable } from 'kysely';

/** A timestamptz column: read as Date, written as Date or ISO string, defaulted by Postgres. */
type CreatedAt = ColumnType<Date, Date | string | undefined, Date | string>;
type NullableTimestamp = ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
type TextArray = ColumnType<string[], string[] | undefined, string[]>;

export interface WorkspacesTable {
  id: Generated<string>;
  name: string;
  created_at: CreatedAt;
}

export interface EnvironmentsTable {
  id: Generated<string>;
  workspace_id: string;
  name: string;
  is_default: Generated<boolean>;
  created_at: CreatedAt;
}

export interface ApiKeysTable {
  id: Generated<string>;
  workspace_id: string;
  environment_id: string | null;
  name: string;
  prefix: string;
  key_hash: Buffer;
  created_at: CreatedAt;
  last_used_at: NullableTimestamp;
}

export interface ConnectionsTable {
  id: Generated<string>;
  workspace_id: string;
  environment_id: string;
  integration_type: string;
  integration_name: string | null;
  categories: TextArray;
  permissions: TextArray;
  auth_encrypted: Buffer | null;
  auth_aws_arn: string | null;
  /** Which source adapter polls this connection (`http`). */
  source_adapter: Generated<string>;
  external_xref: string | null;
  is_paused: Generated<boolean>;
  is_healthy: Generated<boolean>;
  last_healthy_at: NullableTimestamp;
  last_unhealthy_at: NullableTimestamp;
  created_at: CreatedAt;
  updated_at: CreatedAt;
}

export type WebhookOrigin = 'unified' | 'truto' | 'hookpost';

export interface WebhooksTable {
  id: Generated<string>;
  workspace_id: string;
  environment_id: string;
  connection_id: string | null;
  origin: WebhookOrigin;
  integration_type: string | null;
  object_type: string | null;
  /** Canonical `family:action` types; empty = every type. */
  event_types: TextArray;
  /** Created with the 2023 `events[]` form: show `events` back. */
  legacy_events: Generated<boolean>;
  hook_url: string | null;
  db_type: string | null;
  db_url_encrypted: Buffer | null;
  db_url_redacted: string | null;
  db_schema: string | null;
  db_name_prefix: string | null;
  webhook_type: Generated<string>;
  interval_minutes: number | null;
  page_max_limit: number | null;
  filters: JSONColumnType<Record<string, string>, string | undefined, string>;
  fields: string | null;
  include_raw: Generated<boolean>;
  is_active: Generated<boolean>;
  is_paused: Generated<boolean>;
  is_healthy: Generated<boolean>;
  is_beta: Generated<boolean>;
  checked_at: NullableTimestamp;
  subscriptions: TextArray;
  meta: JSONColumnType<Record<string, unknown> | null, string | null | undefined, string | null>;
  secret_encrypted: Buffer;
  /** During a rotation overlap, the old secret still signs (Standard Webhooks). */
  previous_secret_encrypted: Buffer | null;
  previous_secret_expires_at: NullableTimestamp;
  consecutive_failures: Generated<number>;
  failing_since: NullableTimestamp;
  /** Why delivery stopped: e.g. `gone` (a 410). */
  disabled_reason: string | null;
  stream_id: string | null;
  initial_sync: 'pending' | 'running' | null;
  unhealthy_reason: string | null;
  created_at: CreatedAt;
  updated_at: CreatedAt;
}

export type RunTrigger = 'manual' | 'schedule' | 'initial';
export type RunStatus = 'completed' | 'failed';
/** Where a poll failed: listing the source, its credentials, writing deliveries, or understanding its answer. */
export type SourceFailureClass = 'read' | 'auth' | 'dispatch' | 'process';

export interface PollStreamsTable {
  id: Generated<string>;
  workspace_id: string;
  environment_id: string;
  connection_id: string;
  object_type: string;
  filters: JSONColumnType<Record<string, string>, string, string>;
  filters_key: string;
  baseline_at: CreatedAt;
  high_water_mark: NullableTimestamp;
  next_run_at: NullableTimestamp;
  manual_requested: Generated<boolean>;
  /** A run asked for while one was in progress: the next run is no later than this (migration 0011). */
  rerun_at: NullableTimestamp;
  run_id: string | null;
  run_started_at: NullableTimestamp;
  run_scheduled_at: NullableTimestamp;
  run_trigger: RunTrigger | null;
  run_mode: 'incremental' | 'full' | null;
  run_since: NullableTimestamp;
  run_cursor: string | null;
  run_pages: Generated<number>;
  run_records: Generated<number>;
  run_changes: Generated<number>;
  run_deliveries: Generated<number>;
  run_max_updated_at: NullableTimestamp;
  consecutive_failures: Generated<number>;
  failing_since: NullableTimestamp;
  last_error: string | null;
  last_error_class: SourceFailureClass | null;
  created_at: CreatedAt;
}

export interface ConnectionPollsTable {
  connection_id: string;
  next_due_at: NullableTimestamp;
  not_before: NullableTimestamp;
  lease_until: NullableTimestamp;
  leased_by: string | null;
  last_request_at: NullableTimestamp;
  /** Generated: greatest(next_due_at, not_before, lease_until), null when nothing is due. */
  claimable_at: ColumnType<Date | null, never, never>;
}

export interface PollRecordsTable {
  stream_id: string;
  record_id: string;
  fingerprint: Buffer;
  deleted: Generated<boolean>;
}

export interface PollRunsTable {
  id: Generated<string>;
  stream_id: string;
  trigger: RunTrigger;
  status: RunStatus;
  scheduled_at: Date;
  started_at: Date;
  finished_at: CreatedAt;
  pages: number;
  records_seen: number;
  changes: number;
  deliveries: number;
  error: string | null;
  error_class: SourceFailureClass | null;
}

export interface EventsTable {
  id: string;
  workspace_id: string;
  environment_id: string;
  external_id: string | null;
  type: string;
  object_type: string | null;
  connection_id: string | null;
  data: JSONColumnType<Record<string, unknown>, string, string>;
  /** Deliveries it fanned out to when accepted. */
  deliveries: Generated<number>;
  /** Deliveries that refer to it now (fan-out and replays, less those deleted); null: not counted yet (migration 0010). */
  refs: number | null;
  created_at: CreatedAt;
}

export interface IdempotencyKeysTable {
  workspace_id: string;
  key: string;
  request_hash: Buffer;
  response_status: number | null;
  response_body: JSONColumnType<object | null, string | null, string | null>;
  created_at: CreatedAt;
}

export type DeliveryKind = 'event' | 'test' | 'virtual';
export type DeliveryStatus = 'pending' | 'delivering' | 'succeeded' | 'dead' | 'held';

export interface DeliveriesTable {
  id: string;
  workspace_id: string;
  webhook_id: string;
  event_id: string | null;
  kind: DeliveryKind;
  payload: JSONColumnType<object | null, string | null | undefined, string | null>;
  status: DeliveryStatus;
  attempts: Generated<number>;
  next_attempt_at: CreatedAt;
  lease_until: NullableTimestamp;
  leased_by: string | null;
  last_status_code: number | null;
  last_error: string | null;
  replay_of: string | null;
  created_at: CreatedAt;
  updated_at: CreatedAt;
  finished_at: NullableTimestamp;
}

export interface DeliveryAttemptsTable {
  id: Generated<number>;
  delivery_id: string;
  webhook_id: string;
  attempt: number;
  started_at: ColumnType<Date, Date | string, never>;
  duration_ms: number;
  status_code: number | null;
  outcome: string;
  error: string | null;
  response_snippet: string | null;
  request_headers: JSONColumnType<Record<string, string>, string, never>;
  created_at: CreatedAt;
}

export interface Database {
  workspaces: WorkspacesTable;
  environments: EnvironmentsTable;
  api_keys: ApiKeysTable;
  connections: ConnectionsTable;
  webhooks: WebhooksTable;
  poll_streams: PollStreamsTable;
  connection_polls: ConnectionPollsTable;
  poll_records: PollRecordsTable;
  poll_runs: PollRunsTable;
  events: EventsTable;
  idempotency_keys: IdempotencyKeysTable;
  deliveries: DeliveriesTable;
  delivery_attempts: DeliveryAttemptsTable;
  deleted_webhooks: DeletedWebhooksTable;
}

/** Webhooks deleted whose deliveries and attempts the worker has yet to delete (migration 0009). */
export interface DeletedWebhooksTable {
  webhook_id: string;
  deleted_at: Generated<Date>;
}

export type WorkspaceRow = Selectable<WorkspacesTable>;
export type EnvironmentRow = Selectable<EnvironmentsTable>;
export type ApiKeyRow = Selectable<ApiKeysTable>;
export type ConnectionRow = Selectable<ConnectionsTable>;
export type NewConnection = Insertable<ConnectionsTable>;
export type ConnectionUpdate = Updateable<ConnectionsTable>;
export type WebhookRow = Selectable<WebhooksTable>;
export type NewWebhook = Insertable<WebhooksTable>;
export type WebhookUpdate = Updateable<WebhooksTable>;
export type PollStreamRow = Selectable<PollStreamsTable>;
export type PollRunRow = Selectable<PollRunsTable>;
export type EventRow = Selectable<EventsTable>;
export type DeliveryRow = Selectable<DeliveriesTable>;
export type DeliveryAttemptRow = Selectable<DeliveryAttemptsTable>;
