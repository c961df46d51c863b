import type { Database, SecretBox } from '@hookpost/db';
import type { Config, Logger } from '@hookpost/runtime';
import type { Kysely } from 'kysely';

/** Everything a request handler needs, passed explicitly: no module singletons. */
export interface ApiDeps {
  db: Kysely<Database>;
  config: Readonly<Config>;
  logger: Logger;
  secrets: SecretBox;
}
