import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { loadConfig } from '../config.js';
import { ServerError } from '../errors.js';
import { createRuntime, type Runtime } from '../runtime.js';
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

/** What became of one image. */
type Outcome = 'built' | 'kept' | 'flat' | 'elsewhere';

/** Pyramids into IIIF_PYRAMID_DIR, as the server builds them on first touch. */
function toLocalPyramids({ source, images, pyramids }: Runtime): (identifier: string) => Promise<Outcome> {
  return async (identifier) => {
    const before = pyramids!.has(await source.resolve(identifier));
    const image = await images.resolve(identifier);
    if (before) return 'kept';
    return image.metadata.levels.several && pyramids!.has(image.source) ? 'built' : 'flat';
  };
}

/** Derivatives into the fleet's store, as a server publishes them; a version already there is not even probed. */
function toDerivatives({ source, images, pyramids, shared }: Runtime): (identifier: string) => Promise<Outcome> {
  return async (identifier) => {
    if (await shared!.published(await source.resolve(identifier))) return 'kept';
    const image = await images.resolve(identifier);
    if (await shared!.published(image.source)) return 'built';
    // Read from a local pyramid: converted here, but the store did not take it.
    if (pyramids!.has(image.source)) throw new ServerError('CLI_DERIVATIVE_NOT_STORED', 'converted, but the derivative store failed to take it');
    // Read from the source itself: it needs no pyramid, or another container is still converting it.
    return !image.metadata.levels.several && pyramids!.wants(image.metadata) ? 'elsewhere' : 'flat';
  };
}

export const pyramidCommand: Command = {
  summary: 'build the pyramids of a folder or S3 prefix ahead of traffic (resumable: built ones are kept)',
  usage: '<folder|s3://bucket/prefix> [--limit N] [--to-derivatives] [settings]',
  help: [
    'Converts every image that needs a pyramid (single-level and at least IIIF_PYRAMID_THRESHOLD_PIXELS,',
    'or JPEG 2000) into IIIF_PYRAMID_DIR, exactly as the server would on first touch. Pyramids already',
    'built for the same source version are skipped, so an interrupted run simply continues; a file is',
    'only ever stored complete. Point the server at the same IIIF_PYRAMID_DIR.',
    '  --limit N           convert at most N images (default 100000)',
    "  --to-derivatives    publish into the fleet's derivative store (IIIF_DERIVATIVE_PREFIX) instead; sources",
    '                      whose derivative is there already are skipped, local copies go to a temporary folder',
    'Example: iiif-elastic pyramid s3://museum-images/iiif/ --pyramid-dir /var/cache/iiif/pyramids',
    '         iiif-elastic pyramid s3://museum-images/iiif/ --to-derivatives --derivative-prefix derivatives/',
    '',
    settingsHelp(),
  ].join('\n'),
  options: { ...settingOptions, limit: { type: 'string', default: '100000' }, 'to-derivatives': { type: 'boolean', default: false } },
  positionals: ['source'],
  async run({ values, positionals }) {
    const limit = Number(values.limit);
    if (!Number.isSafeInteger(limit) || limit < 1) throw new UsageError(`--limit must be a whole number above 0, got "${String(values.limit)}"`);
    const shared = values['to-derivatives'] === true;
    let config = loadConfig({ ...environmentWith(values), ...sourceSettings(positionals[0]!) });
    if (config.pyramids.thresholdPixels === 0) throw new ServerError('CLI_NOTHING_TO_DO', 'IIIF_PYRAMID_THRESHOLD_PIXELS is 0: nothing would be converted');
    if (shared && !config.derivatives) throw new ServerError('CLI_NO_DERIVATIVES', '--to-derivatives needs an s3:// source and IIIF_DERIVATIVE_PREFIX (--derivative-prefix)');
    // Local copies are only a staging area on the way to the store: a pyramid left in a folder by
    // an earlier run would be read there and never published.
    const staging = shared ? await mkdtemp(join(tmpdir(), 'iiif-elastic-derivatives-')) : undefined;
    if (staging) config = { ...config, pyramids: { ...config.pyramids, dir: staging } };
    try {
      const runtime = await createRuntime(config);
      const { source, images } = runtime;
      if (!source.list) throw new ServerError('SOURCE_CANNOT_LIST', 'this source cannot list its images');
      const outcome = shared ? toDerivatives(runtime) : toLocalPyramids(runtime);
      const identifiers = await source.list(limit);
      const show = progress(identifiers.length);
      const counts: Record<Outcome, number> = { built: 0, kept: 0, flat: 0, elsewhere: 0 };
      const failures: string[] = [];
      for (const [index, identifier] of identifiers.entries()) {
        try {
          counts[await outcome(identifier)]++;
        } catch (error) {
          failures.push(`${identifier}: ${error instanceof Error ? error.message : String(error)}`);
        }
        show(index + 1, `built ${counts.built}, already built ${counts.kept}, not needed ${counts.flat}, failed ${failures.length}`);
      }
      if (process.stderr.isTTY) process.stderr.write('\n');
      await images.close();
      process.stdout.write(
        shared
          ? `${identifiers.length} images: ${counts.built} derivatives built, ${counts.kept} already in the store, ${counts.flat} not needed, ${counts.elsewhere} still being built elsewhere, ${failures.length} failed\n`
          : `${identifiers.length} images: ${counts.built} pyramids built, ${counts.kept} already built, ${counts.flat} not needed, ${failures.length} failed\n`,
      );
      if (failures.length > 0) throw new ServerError('CLI_CONVERSIONS_FAILED', `${failures.length} image(s) could not be converted; first: ${failures[0]}`);
    } finally {
      if (staging) await rm(staging, { recursive: true, force: true });
    }
  },
};
