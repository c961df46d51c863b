import './heap.js';
import { createLogger, loadConfig, onShutdown, requireDatabaseUrl } from '@hookpost/runtime';
import { startWorker } from './worker.js';

const config = loadConfig();
const logger = createLogger('delivery-worker', config.logLevel);
if (config.usingDevEncryptionKey) logger.warn('HOOKPOST_ENCRYPTION_KEY is unset: using the development key, which is in the repository; set it wherever data matters');
const starting = startWorker({ config, databaseUrl: requireDatabaseUrl(config), logger });
// Signal handlers first: a stop request that arrives while starting still stops cleanly.
onShutdown(logger, [async () => (await starting).stop()], { supervisorPid: config.supervisorPid, graceMs: config.delivery.timeoutMs + 5_000 });
await starting;
