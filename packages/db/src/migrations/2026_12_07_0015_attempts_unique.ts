import { sql, type Kysely } from 'kysely';

// Frozen: never edit a migration that has shipped; add a new one.
//
// One log entry per attempt of a delivery. The completion's retry after a lost answer skipped
// the attempts it found logged, but it looked with its own snapshot: a lost try still running
// on the server (waiting for a lock when its session was reset) committed its entries after
// the retry had looked, and the attempt was logged twice. The unique index lets every
// completion insert with `on conflict do nothing`, which waits for such a try and skips what
// it wrote. Entries already duplicated that way keep their first copy.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    delete from delivery_attempts a using delivery_attempts b
     where a.delivery_id = b.delivery_id and a.attempt = b.attempt and a.id > b.id;
    create unique index delivery_attempts_delivery_attempt on delivery_attempts (delivery_id, attempt);
    drop index delivery_attempts_delivery;
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    create index delivery_attempts_delivery on delivery_attempts (delivery_id, attempt);
    drop index delivery_attempts_delivery_attempt;
  `.execute(db);
}
