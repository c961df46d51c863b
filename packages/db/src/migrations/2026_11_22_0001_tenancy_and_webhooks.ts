import { sql, type Kysely } from 'kysely';

// Frozen: never edit a migration that has shipped; add a new one.
// timestamptz(3): millisecond precision, exactly what the API shows, so filters and
// cursors built from a returned timestamp compare equal to the stored one.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table workspaces (
      id uuid primary key default gen_random_uuid(),
      name text not null,
      created_at timestamptz(3) not null default now()
    );

    create table environments (
      id uuid primary key default gen_random_uuid(),
      workspace_id uuid not null references workspaces(id) on delete cascade,
      name text not null,
      is_default boolean not null default false,
      created_at timestamptz(3) not null default now(),
      unique (workspace_id, name)
    );
    create unique index environments_one_default on environments (workspace_id) where is_default;

    create table api_keys (
      id uuid primary key default gen_random_uuid(),
      workspace_id uuid not null references workspaces(id) on delete cascade,
      environment_id uuid references environments(id) on delete cascade,
      name text not null,
      prefix text not null,
      key_hash bytea not null unique,
      created_at timestamptz(3) not null default now(),
      last_used_at timestamptz(3)
    );
    create index api_keys_workspace on api_keys (workspace_id, created_at);

    create table connections (
      id uuid primary key default gen_random_uuid(),
      workspace_id uuid not null references workspaces(id) on delete cascade,
      environment_id uuid not null references environments(id) on delete cascade,
      integration_type text not null,
      integration_name text,
      categories text[] not null default '{}',
      permissions text[] not null default '{}',
      auth_encrypted bytea,
      auth_aws_arn text,
      external_xref text,
      is_paused boolean not null default false,
      is_healthy boolean not null default true,
      last_healthy_at timestamptz(3),
      last_unhealthy_at timestamptz(3),
      created_at timestamptz(3) not null default now(),
      updated_at timestamptz(3) not null default now()
    );
    create index connections_workspace on connections (workspace_id, created_at, id);

    create table webhooks (
      id uuid primary key default gen_random_uuid(),
      workspace_id uuid not null references workspaces(id) on delete cascade,
      environment_id uuid not null references environments(id) on delete cascade,
      connection_id uuid references connections(id) on delete cascade,
      origin text not null check (origin in ('unified', 'truto', 'hookpost')),
      integration_type text,
      object_type text,
      event_types text[] not null default '{}',
      legacy_events boolean not null default false,
      hook_url text,
      db_type text,
      db_url_encrypted bytea,
      db_url_redacted text,
      db_schema text,
      db_name_prefix text,
      webhook_type text not null default 'virtual',
      interval_minutes double precision,
      page_max_limit integer,
      filters jsonb not null default '{}',
      fields text,
      include_raw boolean not null default false,
      is_active boolean not null default true,
      is_paused boolean not null default false,
      is_healthy boolean not null default true,
      is_beta boolean not null default false,
      checked_at timestamptz(3),
      subscriptions text[] not null default '{}',
      meta jsonb,
      secret_encrypted bytea not null,
      created_at timestamptz(3) not null default now(),
      updated_at timestamptz(3) not null default now(),
      check (hook_url is not null or db_url_encrypted is not null)
    );
    create index webhooks_workspace_created on webhooks (workspace_id, created_at, id);
    create index webhooks_connection on webhooks (connection_id);

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
    create index webhook_runs_webhook on webhook_runs (webhook_id, requested_at desc);
    create index webhook_runs_requested on webhook_runs (requested_at) where status = 'requested';
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    drop table webhook_runs;
    drop table webhooks;
    drop table connections;
    drop table api_keys;
    drop table environments;
    drop table workspaces;
  `.execute(db);
}
