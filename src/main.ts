import { loadConfig } from './config.js';
import { growHeapInLargerSteps } from './heap-growth.js';
import { sizeThreadPool } from './thread-pool.js';

/**
 * Starts the server from the environment. Any configuration problem ends the process with exit
 * code 1 and one line on stderr, so an orchestrator shows exactly what is wrong and nothing
 * starts half-set-up.
 */
async function main(): Promise<void> {
  // Before the server (and with it sharp, the caches, the S3 client) is even loaded: libuv's
  // thread pool takes its size from the environment when it first starts (see thread-pool.ts).
  sizeThreadPool(process.env, loadConfig(process.env));
  growHeapInLargerSteps();
  const { serve } = await import('./server.js');
  await serve(process.env);
}

main().catch((error: unknown) => {
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`iiif-elastic: ${message}\n`);
  process.exit(1);
});
