import { isAbsolute, resolve } from 'node:path';
import { loadConfig } from '../config.js';
import { ServerError } from '../errors.js';
import { createRuntime } from '../runtime.js';
import { UsageError, type Command } from './command.js';
import { environmentWith, settingOptions, settingsHelp } from './settings.js';

/** Where the images to convert live: a folder, or s3://bucket/prefix. */
export function sourceSettings(target: string): Record<string, string> {
  if (target.startsWith('s3://')) {
    const match = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/.exec(target);
    if (!match) throw new UsageError(`"${target.slice(0, 200)}" is not an S3 URL of the form s3://bucket/prefix`);
    // The path names a folder (IIIF_S3_PREFIX must end with "/"): s3://bucket/iiif is iiif/.
    const prefix = match[2] ?? '';
    return {
      IIIF_SOURCE: 's3',
      IIIF_S3_BUCKET: match[1]!,
      IIIF_S3_PREFIX: prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`,
      // One listed image after another, at the operator's request: the server's brake on
      // fetching unknown identifiers (a probe) has nothing to stop here.
      IIIF_S3_MISS_RATE: '100000',
      IIIF_S3_MISS_BURST: '1000000',
    };
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(target)) throw new UsageError(`"${target.slice(0, 200)}" is neither a folder nor an s3:// URL`);
  return { IIIF_SOURCE: 'folder', IIIF_FILE_ROOT: isAbsolute(target) ? target : resolve(target) };
}

/** One line that redraws itself on a terminal and prints every tenth step elsewhere (logs). */
function progress(total: number): (done: number, note: string) => void {
  const tty = process.stderr.isTTY;
  return (done, note) => {
    if (!tty && done % 10 !== 0 && done !== total) return;
    const width = 30;
    const filled = total === 0 ? width : Math.round((done / total) * width);
    const line = `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${done}/${total} ${note}`;
    process.stderr.write(tty ? `\r${line.padEnd(100).slice(0, 100)}` : `${line}\n`);
  };
}

export const pyramidCommand: Command = {
  summary: 'build the pyramids of a folder or S3 prefix ahead of traffic (resumable: built ones are kept)',
  usage: '<folder|s3://bucket/prefix> [--limit N] [settings]',
  help: [
    'Converts every image that needs a pyramid (single-level and at least IIIF_PYRAMID_THRESHOLD_PIXELS,',
    'or JPEG 2000) into IIIF_PYRAMID_DIR, exactly as the server would on first touch. Pyramids already',
    'built for the same source version are skipped, so an interrupted run simply continues; a file is',
    'only ever stored complete. Point the server at the same IIIF_PYRAMID_DIR.',
    '  --limit N           convert at most N images (default 100000)',
    'Example: iiif-elastic pyramid s3://museum-images/iiif/ --pyramid-dir /var/cache/iiif/pyramids',
    '',
    settingsHelp(),
  ].join('\n'),
  options: { ...settingOptions, limit: { type: 'string', default: '100000' } },
  positionals: ['source'],
  async run({ values, positionals }) {
    const limit = Number(values.limit);
    if (!Number.isSafeInteger(limit) || limit < 1) throw new UsageError(`--limit must be a whole number above 0, got "${String(values.limit)}"`);
    const config = loadConfig({ ...environmentWith(values), ...sourceSettings(positionals[0]!) });
    if (config.pyramids.thresholdPixels === 0) throw new ServerError('CLI_NOTHING_TO_DO', 'IIIF_PYRAMID_THRESHOLD_PIXELS is 0: nothing would be converted');
    const { images, source, pyramids } = await createRuntime(config);
    if (!source.list) throw new ServerError('SOURCE_CANNOT_LIST', 'this source cannot list its images');
    const identifiers = await source.list(limit);
    const show = progress(identifiers.length);
    const counts = { built: 0, kept: 0, flat: 0 };
    const failures: string[] = [];
    for (const [index, identifier] of identifiers.entries()) {
      try {
        const before = pyramids!.has(await source.resolve(identifier));
        const image = await images.resolve(identifier);
        const hasPyramid = image.metadata.levels.several && pyramids!.has(image.source);
        if (before) counts.kept++;
        else if (hasPyramid) counts.built++;
        else counts.flat++;
      } catch (error) {
        failures.push(`${identifier}: ${error instanceof Error ? error.message : String(error)}`);
      }
      show(index + 1, `built ${counts.built}, already built ${counts.kept}, not needed ${counts.flat}, failed ${failures.length}`);
    }
    if (process.stderr.isTTY) process.stderr.write('\n');
    await images.close();
    process.stdout.write(`${identifiers.length} images: ${counts.built} pyramids built, ${counts.kept} already built, ${counts.flat} not needed, ${failures.length} failed\n`);
    if (failures.length > 0) throw new ServerError('CLI_CONVERSIONS_FAILED', `${failures.length} image(s) could not be converted; first: ${failures[0]}`);
  },
};
