import { createServer, type RequestListener, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll } from 'vitest';

/**
 * An HTTP server on 127.0.0.1 for the tests of the enclosing file or describe block:
 * started before them, closed after. `url(path)` is valid once they run.
 */
export function localServer(handler: RequestListener): { url: (path?: string) => string } {
  let server: Server | undefined;
  let base = '';
  beforeAll(async () => {
    const s = createServer(handler);
    server = s;
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server?.closeAllConnections();
    await new Promise((r) => server?.close(r));
  });
  return { url: (path = '') => base + path };
}
