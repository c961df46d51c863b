import { sql, type Kysely } from 'kysely';

// Frozen: never edit a migration that has shipped; add a new one.
//
// The queue's hot path, measured with pg_stat_statements and auto_explain on a 50,000-event
// batch drain (bench part (a)):
//
// 1. A delivery carries a lease holder only while it is being delivered. The completion and
//    release statements select their rows by primary key and `leased_by` alone, instead of
//    also naming `status = 'delivering'`: that condition let the planner pick the partial
//    index deliveries_leased, which in a busy queue holds tens of thousands of dead entries
//    (each claim adds one, each completion kills it); a completion of 128 rows took ~15 ms
//    walking them. The check constraint keeps the shortcut sound.
//
// 2. Foreign keys whose parent is never deleted, or whose cascade is done explicitly, go:
//    each cost one RI trigger query per inserted row, about half of the ingest statement's
//    time (4 checks per event) and one check per logged attempt.
//    - events → workspaces, events → environments: neither is ever deleted, and the API
//      takes both from the authenticated key in the same statement.
//    - deliveries → events: events are never deleted; the fan-out inserts both together.
//    - delivery_attempts → deliveries: deleting a webhook or a connection deletes the
//      attempts of its deliveries first (repositories/webhooks.ts, connections.ts). An
//      attempt logged by a worker while its webhook is being deleted can outlive it; it is
//      unreachable through the API and attempt retention removes it.
//    deliveries → webhooks stays: its cascade is how a deleted webhook's deliveries go.
//
// 3. deliveries_event goes: every delivery wrote it three times (insert, claim, completion:
//    none of them HOT). Its one reader was the answer to a repeated event id, which counted
//    the event's deliveries; the event now keeps that count (events.deliveries, written by
//    the ingest statement). Batch drain: worker-side Postgres CPU −20 %, +10 % deliveries/s.
//
// Cost on an existing install: the check is added NOT VALID (new row versions are checked;
// every existing one already satisfies it, as the code has always cleared leased_by with
// status), but the backfill rewrites every event row under this migration's locks, so
// ingest and delivery wait for it. Run it in a quiet moment on a large database. During a
// rolling upgrade, an API still on the old code inserts events with deliveries = 0, so a
// repeat of such an event reports 0 deliveries.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    alter table deliveries
      add constraint deliveries_leased_only_while_delivering check (leased_by is null or status = 'delivering') not valid,
      drop constraint deliveries_event_id_fkey;
    alter table events drop constraint events_workspace_id_fkey, drop constraint events_environment_id_fkey;
    alter table delivery_attempts drop constraint delivery_attempts_delivery_id_fkey;

    alter table events add column deliveries integer not null default 0;
    update events e set deliveries = c.n
      from (select event_id, count(*) as n from deliveries where event_id is not null and replay_of is null group by event_id) c
     where c.event_id = e.id;
    drop index deliveries_event;
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    create index deliveries_event on deliveries (event_id);
    alter table events drop column deliveries;
    delete from delivery_attempts a where not exists (select 1 from deliveries d where d.id = a.delivery_id);
    alter table delivery_attempts
      add constraint delivery_attempts_delivery_id_fkey foreign key (delivery_id) references deliveries(id) on delete cascade;
    alter table events
      add constraint events_workspace_id_fkey foreign key (workspace_id) references workspaces(id) on delete cascade,
      add constraint events_environment_id_fkey foreign key (environment_id) references environments(id) on delete cascade;
    alter table deliveries
      add constraint deliveries_event_id_fkey foreign key (event_id) references events(id) on delete cascade,
      drop constraint deliveries_leased_only_while_delivering;
  `.execute(db);
}
