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
  created_at: CreatedAt;
  updated_at: CreatedAt;
}

export type RunTrigger = 'manual' | 'schedule' | 'initial';
export type RunStatus = 'requested' | 'running' | 'completed' | 'failed';

export interface WebhookRunsTable {
  id: Generated<string>;
  webhook_id: string;
  trigger: RunTrigger;
  status: RunStatus;
  requested_at: CreatedAt;
  started_at: NullableTimestamp;
  finished_at: NullableTimestamp;
  pages: Generated<number>;
  records_seen: Generated<number>;
  changes_sent: Generated<number>;
  error: string | null;
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
  webhook_runs: WebhookRunsTable;
  events: EventsTable;
  idempotency_keys: IdempotencyKeysTable;
  deliveries: DeliveriesTable;
  delivery_attempts: DeliveryAttemptsTable;
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
export type WebhookRunRow = Selectable<WebhookRunsTable>;
export type EventRow = Selectable<EventsTable>;
export type DeliveryRow = Selectable<DeliveriesTable>;
export type DeliveryAttemptRow = Selectable<DeliveryAttemptsTable>;
