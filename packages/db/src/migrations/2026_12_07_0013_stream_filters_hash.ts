import { sql, type Kysely } from 'kysely';

// Frozen: never edit a migration that has shipped; add a new one.
//
// A stream's `filters_key` becomes the SHA-256 (hex) of the canonical filters text it held
// (pollStreams.filtersKey computes the same from now on). The text itself is as long as a
// webhook's filters allow (50 values of 1,000 characters), and past ~2.7 KB the unique index
// (connection_id, object_type, filters_key) refused the row: creating, replacing or patching
// such a webhook was a 500. Nothing reads the key back; only equal filters must give equal keys.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`update poll_streams set filters_key = encode(sha256(convert_to(filters_key, 'UTF8')), 'hex')`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  // The canonical text again, from the filters column: sorted keys, no spaces. jsonb and
  // JSON.stringify escape strings alike but for rare characters, and sort keys outside the
  // Basic Multilingual Plane apart: such a stream's webhooks get a second stream after the
  // downgrade (it lists from its start again). Filters too long for the index as text (only
  // creatable after up) keep their hash: the code before up never matched them anyway.
  await sql`
    update poll_streams s set filters_key = t.text
      from (select id, coalesce((select '{' || string_agg(to_jsonb(k)::text || ':' || to_jsonb(v)::text, ',' order by k collate "C") || '}'
                                 from jsonb_each_text(p.filters) as f(k, v)), '{}') as text
              from poll_streams p) t
     where t.id = s.id and octet_length(t.text) <= 2000
  `.execute(db);
}
