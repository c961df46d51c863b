import { createLogger, loadConfig, onShutdown } from '@hookpost/runtime';
import { startReceiver } from './receiver.js';

const config = loadConfig();
const logger = createLogger('mock-receiver', config.logLevel);
const receiver = await startReceiver(config.receiver.host, config.receiver.port, {
  secrets: config.receiver.secrets,
  log: (msg, fields) => logger.info(fields ?? {}, msg),
});
logger.info({ url: receiver.url, secrets: config.receiver.secrets.length }, 'mock receiver listening');
onShutdown(logger, [() => receiver.close()], { supervisorPid: config.supervisorPid });
