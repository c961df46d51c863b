import { createDb, createSecretBox, migrateDatabase } from '@hookpost/db';
import { createLogger, LISTEN_BACKLOG, loadConfig, onShutdown, requireDatabaseUrl } from '@hookpost/runtime';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createApi } from './app.js';

const config = loadConfig();
const logger = createLogger('api', config.logLevel);
if (config.usingDevEncryptionKey) logger.warn('HOOKPOST_ENCRYPTION_KEY is unset: using the development key, which is in the repository; set it wherever data matters');

const databaseUrl = requireDatabaseUrl(config);
await migrateDatabase(databaseUrl, 'hookpost-api-migrate');
const db = createDb({
  connectionString: databaseUrl,
  poolMax: config.databasePoolMax,
  applicationName: 'hookpost-api',
  answerTimeoutMs: config.databaseQueryTimeoutMs,
  onQueryError: (err, sql) => logger.debug({ err, sql }, 'query failed'),
});

const { handler, close } = createApi({ db, config, logger, secrets: createSecretBox(config.encryptionKey) });
const server = createServer(handler).listen({ port: config.api.port, host: config.api.host, backlog: LISTEN_BACKLOG }, () => {
  const { port } = server.address() as AddressInfo;
  logger.info({ url: `http://${config.api.host}:${port}` }, 'api listening');
});
server.keepAliveTimeout = 65_000;

onShutdown(logger, [
  () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeIdleConnections();
    }),
  () => close(),
  () => db.destroy(),
], { supervisorPid: config.supervisorPid });
