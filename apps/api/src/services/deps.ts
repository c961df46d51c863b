import type { Database, SecretBox } from '@hookpost/db';
import type { AddressPolicy, Sender } from '@hookpost/delivery';
import type { Config, Logger } from '@hookpost/runtime';
import type { Kysely } from 'kysely';
import type { ApiKeyCache } from '../http/auth.js';
import type { EventIngestor } from './ingest.js';

/** What the caller gives createApp. */
export interface ApiDeps {
  db: Kysely<Database>;
  config: Readonly<Config>;
  logger: Logger;
  secrets: SecretBox;
}

/** Everything a request handler needs, passed explicitly: no module singletons. */
export interface ApiContext extends ApiDeps {
  ingestor: EventIngestor;
  /** Which addresses hook URLs may point at (SSRF guard). */
  addressPolicy: AddressPolicy;
  /** For synchronous test sends. */
  sender: Sender;
  apiKeyCache: ApiKeyCache;
}
