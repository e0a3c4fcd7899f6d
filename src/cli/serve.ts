import { serve } from '../server.js';
import type { Command } from './command.js';
import { environmentWith, settingOptions, settingsHelp } from './settings.js';

export const serveCommand: Command = {
  summary: 'run the IIIF server (what `npm start` runs), configured by flags and environment',
  usage: '[settings]',
  help: `Example: iiif-elastic serve --port 8080 --file-root /data/images --metrics-port 9100\n\n${settingsHelp()}`,
  options: settingOptions,
  positionals: [],
  async run({ values }) {
    await serve(environmentWith(values));
  },
};
