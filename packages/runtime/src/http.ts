import type { Server } from 'node:http';
import type { Readable } from 'node:stream';
import type { AddressInfo } from 'node:net';

/** Small helpers for the plain node:http servers (mock receiver, mock provider). */

/**
 * The listen backlog asked for (the kernel caps it at net.core.somaxconn). With Node's default,
 * 511, a delivery worker opening hundreds of connections at once to a busy receiver can overflow
 * the accept queue: the kernel drops the handshakes' last step, the clients send their requests
 * anyway, and those are read only after retransmits, seconds later. One test run had 48 sends
 * the receiver got but answered only past a 10 s timeout, on a machine that had counted 1,208
 * listen overflows (TcpExtListenOverflows) over a day of tests and benchmarks.
 */
export const LISTEN_BACKLOG = 4096;

/** Starts `server` on host:port (port 0: any free port) and returns its base URL. */
export async function listenHttp(server: Server, host: string, port: number): Promise<string> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host, backlog: LISTEN_BACKLOG }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  return `http://${host.includes(':') ? `[${host}]` : host}:${addr.port}`;
}

/**
 * Reads a body (request or response) of at most `max` bytes; null (and the stream dropped)
 * when larger. Rejects when the stream fails or closes before its end (an aborted upload).
 */
export function readBodyCapped(req: Readable, max: number): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > max) {
        resolve(null);
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
    req.on('close', () => reject(new Error('the body ended early: its stream closed'))); // no-op once settled
  });
}
