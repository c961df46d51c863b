import { sql, type Kysely } from 'kysely';

// Frozen: never edit a migration that has shipped; add a new one.
//
// Virtual webhooks. The unit of polling is a *stream*: one connection + object type +
// filters, shared by every virtual webhook that asks for the same thing. A stream
// keeps the change-detection state (high-water mark, per-record fingerprints) and the
// run in progress (so a crashed run resumes from its page cursor). Polling is claimed
// per *connection* (connection_polls): one poll at a time per connection, across
// workers, with SKIP LOCKED and a lease.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    alter table connections add column source_adapter text not null default 'http';

    create table poll_streams (
      id uuid primary key default gen_random_uuid(),
      workspace_id uuid not null references workspaces(id) on delete cascade,
      environment_id uuid not null references environments(id) on delete cascade,
      connection_id uuid not null references connections(id) on delete cascade,
      object_type text not null,
      filters jsonb not null default '{}',
      -- Canonical text of filters (sorted keys): part of the stream's identity.
      filters_key text not null,
      -- Changes before this instant are history, not news.
      baseline_at timestamptz(3) not null default now(),
      -- Highest updated_at seen by a completed run.
      high_water_mark timestamptz(3),
      -- Null: dormant (no active webhook).
      next_run_at timestamptz(3),
      -- Set by trigger: the next run is recorded as manual.
      manual_requested boolean not null default false,
      -- The run in progress; survives a crash so the next claim resumes it.
      run_id uuid,
      run_started_at timestamptz(3),
      run_scheduled_at timestamptz(3),
      run_trigger text check (run_trigger in ('schedule', 'manual', 'initial')),
      run_mode text check (run_mode in ('incremental', 'full')),
      run_since timestamptz(3),
      run_cursor text,
      run_pages integer not null default 0,
      run_records integer not null default 0,
      run_changes integer not null default 0,
      run_deliveries integer not null default 0,
      run_max_updated_at timestamptz(3),
      consecutive_failures integer not null default 0,
      failing_since timestamptz(3),
      last_error text,
      last_error_class text,
      created_at timestamptz(3) not null default now(),
      unique (connection_id, object_type, filters_key)
    );
    create index poll_streams_due on poll_streams (connection_id, next_run_at) where next_run_at is not null;

    create table connection_polls (
      connection_id uuid primary key references connections(id) on delete cascade,
      -- Earliest next_run_at of the connection's streams (null: nothing scheduled).
      next_due_at timestamptz(3),
      -- Not before this (Retry-After, refused credentials).
      not_before timestamptz(3),
      lease_until timestamptz(3),
      leased_by text,
      last_request_at timestamptz(3),
      -- When a poller may take it: due, not throttled, not leased (null: nothing scheduled).
      claimable_at timestamptz(3) generated always as (
        case when next_due_at is null then null else greatest(next_due_at, not_before, lease_until) end
      ) stored
    );
    create index connection_polls_claimable on connection_polls (claimable_at) where claimable_at is not null;

    -- What each record looked like when last seen (content hash without updated_at).
    create table poll_records (
      stream_id uuid not null references poll_streams(id) on delete cascade,
      record_id text not null,
      fingerprint bytea not null,
      deleted boolean not null default false,
      primary key (stream_id, record_id)
    );

    create table poll_runs (
      id uuid primary key default gen_random_uuid(),
      stream_id uuid not null references poll_streams(id) on delete cascade,
      trigger text not null check (trigger in ('schedule', 'manual', 'initial')),
      status text not null check (status in ('completed', 'failed')),
      scheduled_at timestamptz(3) not null,
      started_at timestamptz(3) not null,
      finished_at timestamptz(3) not null default now(),
      pages integer not null,
      records_seen integer not null,
      changes integer not null,
      deliveries integer not null,
      error text,
      error_class text check (error_class in ('read', 'auth', 'dispatch', 'process'))
    );
    create index poll_runs_stream on poll_runs (stream_id, started_at desc);
    create index poll_runs_finished on poll_runs (finished_at);

    alter table webhooks
      add column stream_id uuid references poll_streams(id) on delete set null,
      -- include_all: pending until a run starts the initial sync, running during it.
      add column initial_sync text check (initial_sync in ('pending', 'running')),
      -- Why is_healthy is false when the source (not the endpoint) is failing: 'source:<class>: …'.
      add column unhealthy_reason text;
    create index webhooks_stream on webhooks (stream_id) where stream_id is not null;

    drop table webhook_runs;
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table webhook_runs (
      id uuid primary key default gen_random_uuid(),
      webhook_id uuid not null references webhooks(id) on delete cascade,
      trigger text not null check (trigger in ('manual', 'schedule', 'initial')),
      status text not null check (status in ('requested', 'running', 'completed', 'failed')),
      requested_at timestamptz(3) not null default now(),
      started_at timestamptz(3),
      finished_at timestamptz(3),
      pages integer not null default 0,
      records_seen integer not null default 0,
      changes_sent integer not null default 0,
      error text
    );
    alter table webhooks drop column stream_id, drop column initial_sync, drop column unhealthy_reason;
    drop table poll_runs;
    drop table poll_records;
    drop table connection_polls;
    drop table poll_streams;
    alter table connections drop column source_adapter;
  `.execute(db);
}
