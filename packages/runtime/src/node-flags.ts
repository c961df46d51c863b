/**
 * Node flags the API and the delivery worker run with (the launcher, the bench and each
 * app's `npm start` pass them; keep those `start` scripts in step with this list).
 *
 * `--max-semi-space-size=32` (MB; V8's default here is 16): a delivery in flight lives
 * through a few scavenges, so with the default young generation most of them were
 * promoted and collected by the old generation's GC instead (~10 % of the worker's time).
 * Measured on the 2-core VM: batch drain +5 %, one event per request +10 %, worker peak
 * RSS 145 → ~180 MB (its target is < 200 MB). It cannot be set from inside the process:
 * V8 sizes the young generation when the isolate starts.
 */
export const SERVICE_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=32'];
