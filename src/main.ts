import { serve } from './server.js';

/**
 * Starts the server from the environment. Any configuration problem ends the process with exit
 * code 1 and one line on stderr, so an orchestrator shows exactly what is wrong and nothing
 * starts half-set-up.
 */
serve(process.env).catch((error: unknown) => {
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`iiif-elastic: ${message}\n`);
  process.exit(1);
});
