import type { Logger } from 'pino';

export type ShutdownTask = () => Promise<void> | void;

/**
 * Runs `tasks` in order on the first SIGTERM/SIGINT, then exits 0. A second signal,
 * or the grace period running out, forces exit 1. Idempotent.
 */
export function onShutdown(
  logger: Logger,
  tasks: ShutdownTask[],
  options: { graceMs?: number; supervisorPid?: number | undefined } = {},
): () => Promise<void> {
  const graceMs = options.graceMs ?? 10_000;
  let stopping: Promise<void> | undefined;
  const run = (reason: string): Promise<void> => {
    if (stopping) return stopping;
    logger.info({ reason }, 'shutting down');
    const timer = setTimeout(() => {
      logger.error({ graceMs }, 'graceful shutdown timed out; forcing exit');
      process.exit(1);
    }, graceMs);
    timer.unref();
    stopping = (async () => {
      for (const task of tasks) {
        try {
          await task();
        } catch (err) {
          logger.error({ err }, 'shutdown task failed');
        }
      }
      clearTimeout(timer);
      logger.info('stopped');
    })();
    return stopping;
  };
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, 'second signal during shutdown; forcing exit');
      process.exit(1);
    }
    void run(signal).then(() => process.exit(0));
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  const supervisor = options.supervisorPid;
  if (supervisor !== undefined) {
    // Gone means: no such process, or we were re-parented (a killed supervisor can
    // linger as a zombie that still answers kill(pid, 0)).
    const parentAtStart = process.ppid;
    const watch = setInterval(() => {
      let alive = process.ppid === parentAtStart;
      try {
        process.kill(supervisor, 0);
      } catch {
        alive = false;
      }
      if (!alive) {
        clearInterval(watch);
        void run('supervisor exited').then(() => process.exit(0));
      }
    }, 1000);
    watch.unref();
  }
  return () => run('requested');
}
