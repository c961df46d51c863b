import { sql, type Kysely } from 'kysely';

// Frozen: never edit a migration that has shipped; add a new one.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    alter table webhooks
      add column consecutive_failures integer not null default 0,
      add column failing_since timestamptz(3),
      add column disabled_reason text,
      add column previous_secret_encrypted bytea,
      add column previous_secret_expires_at timestamptz(3);

    -- Fan-out matching reads active webhooks of one workspace + environment.
    create index webhooks_matching on webhooks (workspace_id, environment_id) where is_active and not is_paused;

    create table events (
      id uuid primary key,
      workspace_id uuid not null references workspaces(id) on delete cascade,
      environment_id uuid not null references environments(id) on delete cascade,
      -- The client's own event id: a repeat is the same event.
      external_id text,
      type text not null,
      object_type text,
      connection_id uuid,
      data jsonb not null,
      created_at timestamptz(3) not null default now()
    );
    create unique index events_external_id on events (workspace_id, external_id) where external_id is not null;
    create index events_created on events (created_at);

    create table idempotency_keys (
      workspace_id uuid not null references workspaces(id) on delete cascade,
      key text not null,
      request_hash bytea not null,
      response_status integer,
      response_body jsonb,
      created_at timestamptz(3) not null default now(),
      primary key (workspace_id, key)
    );
    create index idempotency_keys_created on idempotency_keys (created_at);

    -- One row per (message, webhook): the outbox. Its id is the webhook-id header.
    create table deliveries (
      id uuid primary key,
      workspace_id uuid not null references workspaces(id) on delete cascade,
      webhook_id uuid not null references webhooks(id) on delete cascade,
      event_id uuid references events(id) on delete cascade,
      kind text not null check (kind in ('event', 'test', 'virtual')),
      -- Body material when it is not an event's (test payloads, virtual pages).
      payload jsonb,
      status text not null check (status in ('pending', 'delivering', 'succeeded', 'dead', 'held')),
      attempts integer not null default 0,
      next_attempt_at timestamptz(3) not null default now(),
      lease_until timestamptz(3),
      leased_by text,
      last_status_code integer,
      last_error text,
      replay_of uuid,
      created_at timestamptz(3) not null default now(),
      updated_at timestamptz(3) not null default now(),
      finished_at timestamptz(3)
    );
    create index deliveries_due on deliveries (next_attempt_at) where status = 'pending';
    create index deliveries_leased on deliveries (lease_until) where status = 'delivering';
    create index deliveries_webhook on deliveries (webhook_id, created_at desc, id);
    create index deliveries_event on deliveries (event_id);

    create table delivery_attempts (
      id bigint generated always as identity primary key,
      delivery_id uuid not null references deliveries(id) on delete cascade,
      webhook_id uuid not null,
      attempt integer not null,
      started_at timestamptz(3) not null,
      duration_ms integer not null,
      status_code integer,
      outcome text not null,
      error text,
      response_snippet text,
      request_headers jsonb not null,
      created_at timestamptz(3) not null default now()
    );
    create index delivery_attempts_delivery on delivery_attempts (delivery_id, attempt);
    create index delivery_attempts_created on delivery_attempts (created_at);
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    drop table delivery_attempts;
    drop table deliveries;
    drop table idempotency_keys;
    drop table events;
    drop index webhooks_matching;
    alter table webhooks
      drop column consecutive_failures,
      drop column failing_since,
      drop column disabled_reason,
      drop column previous_secret_encrypted,
      drop column previous_secret_expires_at;
  `.execute(db);
}
