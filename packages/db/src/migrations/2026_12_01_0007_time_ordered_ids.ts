import { sql, type Kysely } from 'kysely';

// Frozen: never edit a migration that has shipped; add a new one.
//
// 1. Time-ordered ids (UUID version 7) for the rows the queue writes most: events and
// deliveries. With random ids every insert into their primary keys lands on a random leaf
// page, so a queue that writes thousands of rows a second keeps its whole key indexes hot,
// splits leaves in the middle (half-empty pages), and after each checkpoint writes a
// full-page image to the WAL for the first change of every leaf it touches. With ids that
// start with the time, inserts go to the right edge: a few hot pages, full splits, and a
// claim or completion looks its rows up in pages it has just touched.
//
// The API and worker make ids in JS (ids.ts: newId); this function makes them in SQL, for
// the deliveries a fan-out or a replay inserts. Same layout: 48 bits of Unix milliseconds,
// version 7, variant 10, 74 random bits (from gen_random_uuid, whose version nibble 0100
// becomes 0111 by setting bits 52 and 53).
//
// Ids already stored stay as they are; nothing orders by id alone or parses it.
//
// 2. deliveries_webhook is rebuilt ascending, (webhook_id, created_at, id): the listing
// (newest first, keyset on created_at and id) reads it backwards, and now in exactly its
// order (the old one had id ascending under created_at descending, which the listing's
// `id desc` could not use). New rows go to the right edge of their webhook's range, where
// B-tree splits leave full pages, instead of the left edge, where they leave half-empty ones.
//
// Cost on an existing install: the index is rebuilt under this migration's locks, so
// ingest and delivery wait for it. Run it in a quiet moment on a large database.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create function hookpost_uuid_v7() returns uuid language sql volatile parallel safe as $fn$
      select encode(
        set_bit(set_bit(
          overlay(uuid_send(gen_random_uuid())
                  placing substring(int8send((extract(epoch from clock_timestamp()) * 1000)::bigint) from 3)
                  from 1 for 6),
          52, 1), 53, 1),
        'hex')::uuid
    $fn$;
    drop index deliveries_webhook;
    create index deliveries_webhook on deliveries (webhook_id, created_at, id);
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    drop index deliveries_webhook;
    create index deliveries_webhook on deliveries (webhook_id, created_at desc, id);
    drop function hookpost_uuid_v7();
  `.execute(db);
}
