/**
 * autocannon, the load generator of every benchmark here, minus one habit: it appends every
 * response body to a string (`body += chunk`), UTF-8-decoding each byte of every JPEG it
 * receives. Against a server that answers a hot tile in ~80 µs that decoding cost autocannon
 * more CPU than the server spent, so on a shared machine the server sat idle waiting for its
 * load generator and was measured handling requests one at a time (measured: 40 hot tiles,
 * 7.4k req/s with the server at 0.77 cores; without the decoding, 12.3k req/s at 0.99 cores).
 * Bodies are never checked here (status codes and byte counts are), so they are not kept.
 */
import { createRequire } from 'node:module';
import autocannon from 'autocannon';

const require = createRequire(import.meta.url);
const queue = require('autocannon/lib/pipelinedRequestsQueue.js') as { prototype: Record<string, unknown> };
if (typeof queue.prototype.addBody !== 'function') {
  throw new Error('autocannon changed: PipelinedRequestsQueue.addBody is gone; revisit bench/load-generator.ts');
}
queue.prototype.addBody = () => undefined;

export default autocannon;
