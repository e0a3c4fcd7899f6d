import { loadConfig } from '../config.js';
import { openDerivatives } from '../derivatives/open.js';
import type { PruneReason } from '../derivatives/store.js';
import { ServerError } from '../errors.js';
import { Metrics } from '../metrics.js';
import { UsageError, type Command } from './command.js';
import { sourceSettings } from './pyramid.js';
import { environmentWith, settingOptions, settingsHelp } from './settings.js';

const REASONS: Record<PruneReason, string> = {
  'source-changed': 'source changed',
  'source-deleted': 'source deleted',
  incomplete: 'never completed',
};

export const derivativesCommand: Command = {
  summary: "manage the fleet's shared derivatives in S3: prune those no source version needs",
  usage: 'prune <s3://bucket/prefix> [--dry-run] [settings]',
  help: [
    'prune deletes the derivatives (pyramids and their image information under IIIF_DERIVATIVE_PREFIX) of',
    'the sources below s3://bucket/prefix that no current source version needs: sources whose ETag has',
    'changed or which are gone, and incomplete leftovers of converters that crashed (untouched for longer',
    'than IIIF_DERIVATIVE_LEASE_SECONDS). Each deleted version is printed; a source S3 will not show is',
    'left alone and reported, and the exit code is then 1.',
    '  --dry-run           print what would be deleted, delete nothing',
    'Example: iiif-elastic derivatives prune s3://museum-images/iiif/ --derivative-prefix derivatives/',
    '',
    settingsHelp(),
  ].join('\n'),
  options: { ...settingOptions, 'dry-run': { type: 'boolean', default: false } },
  positionals: ['action', 'source'],
  async run({ values, positionals }) {
    const [action, target] = positionals as [string, string];
    if (action !== 'prune') throw new UsageError(`derivatives: unknown action "${action.slice(0, 50)}"; the one action is prune`);
    if (!target.startsWith('s3://')) throw new UsageError(`derivatives live in S3: give s3://bucket/prefix, not "${target.slice(0, 200)}"`);
    const config = loadConfig({ ...environmentWith(values), ...sourceSettings(target) });
    const derivatives = openDerivatives(config, new Metrics());
    if (!derivatives) throw new ServerError('CLI_NO_DERIVATIVES', 'IIIF_DERIVATIVE_PREFIX is not set (--derivative-prefix): there is no derivative store');
    const dryRun = values['dry-run'] === true;
    try {
      const { store } = derivatives;
      const report = await store.prune({ sourcePrefix: config.s3!.prefix, dryRun, staleAfterMs: config.derivatives!.leaseSeconds * 1000 });
      const verb = dryRun ? 'would delete' : 'deleted';
      for (const { version, reason } of report.pruned) {
        process.stdout.write(`${verb} s3://${store.bucketName}/${version.dir} (${REASONS[reason]}, ${version.keys.length} objects, ${version.bytes} bytes)\n`);
      }
      for (const { sourceKey, reason } of report.unchecked) process.stderr.write(`not checked: ${sourceKey}: ${reason}\n`);
      const bytes = report.pruned.reduce((sum, { version }) => sum + version.bytes, 0);
      process.stdout.write(
        `${report.pruned.length} derivative versions ${dryRun ? 'would be deleted' : 'deleted'} (${bytes} bytes), ${report.kept} kept, ${report.unchecked.length} sources not checked\n`,
      );
      if (report.unchecked.length > 0) {
        throw new ServerError('CLI_SOURCES_UNCHECKED', `${report.unchecked.length} source(s) could not be checked; their derivatives were kept`);
      }
    } finally {
      derivatives.client.destroy();
    }
  },
};
