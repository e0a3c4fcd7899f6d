import { loadConfig } from '../config.js';
import type { ApiVersion } from '../iiif/request.js';
import { createRuntime } from '../runtime.js';
import { UsageError, type Command } from './command.js';
import { environmentWith, settingOptions, settingsHelp } from './settings.js';

const API_VERSIONS: Record<string, ApiVersion> = { '2': 2, '3': 3 };

export const infoCommand: Command = {
  summary: 'print the info.json of one image, read straight from the source (no server needed)',
  usage: '<identifier> [--api 2|3] [settings]',
  help: [
    'The identifier is as in a IIIF URL but not percent-encoded: deep/dir/chart.tif.',
    '  --api 2|3           Image API version of the document (default 3)',
    'The "id" is IIIF_BASE_URL (--base-url) when set, else http://localhost:{port}.',
    'Example: iiif-elastic info mandelbrot.tif --api 2 --base-url https://images.example.org',
    '',
    settingsHelp(),
  ].join('\n'),
  options: { ...settingOptions, api: { type: 'string', default: '3' } },
  positionals: ['identifier'],
  async run({ values, positionals }) {
    const version = API_VERSIONS[String(values.api)];
    if (!version) throw new UsageError(`--api must be 2 or 3, got "${String(values.api)}"`);
    const identifier = positionals[0]!;
    const config = loadConfig(environmentWith(values));
    const runtime = await createRuntime(config);
    const info = await runtime.service.infoDocument(identifier, version, config.baseUrl ?? `http://localhost:${config.port}`);
    runtime.close();
    process.stdout.write(`${JSON.stringify(info, null, 2)}\n`);
  },
};
