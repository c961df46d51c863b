import { createLogger, onShutdown } from '@hookpost/runtime';
import { loadProviderConfig } from './config.js';
import { startProvider } from './provider.js';

const config = loadProviderConfig();
const logger = createLogger('mock-provider', config.logLevel);
const provider = await startProvider(config.host, config.port, {
  seed: config.seed,
  records: config.records,
  rates: config.rates,
  log: (msg, fields) => logger.warn(fields ?? {}, msg),
});
logger.info({ url: provider.url, seed: config.seed, records: config.records, ...config.rates }, 'mock provider listening');
onShutdown(logger, [() => provider.close()], { supervisorPid: config.supervisorPid });
