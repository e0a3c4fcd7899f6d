import { loadConfig } from '../config.js';
import { growHeapInLargerSteps } from '../heap-growth.js';
import { sizeThreadPool } from '../thread-pool.js';
import type { Command } from './command.js';
import { environmentWith, settingOptions, settingsHelp } from './settings.js';

export const serveCommand: Command = {
  summary: 'run the IIIF server (what `npm start` runs), configured by flags and environment',
  usage: '[settings]',
  help: `Example: iiif-elastic serve --port 8080 --file-root /data/images --metrics-port 9100\n\n${settingsHelp()}`,
  options: settingOptions,
  positionals: [],
  async run({ values }) {
    const env = environmentWith(values);
    // As early as this command can: see src/thread-pool.ts and src/heap-growth.ts.
    sizeThreadPool(process.env, loadConfig(env));
    growHeapInLargerSteps();
    // Loaded only now, so that both apply while the server's modules load.
    const { serve } = await import('../server.js');
    await serve(env);
  },
};
