import { createLogger, loadConfig, onShutdown, requireDatabaseUrl } from '@hookpost/runtime';
import { startWorker } from './worker.js';

const config = loadConfig();
const logger = createLogger('delivery-worker', config.logLevel);
const worker = await startWorker({ config, databaseUrl: requireDatabaseUrl(config), logger });
onShutdown(logger, [() => worker.stop()], { supervisorPid: config.supervisorPid, graceMs: config.delivery.timeoutMs + 5_000 });
