import type { Log } from '../cache/disk-cache.js';
import type { Config } from '../config.js';
import type { Metrics } from '../metrics.js';
import { FolderSource } from './folder.js';
import { S3Source } from './s3.js';
import type { ImageSource } from './source.js';

/** The source IIIF_SOURCE names, made once per process. */
export function openSource(config: Config, metrics: Metrics, log: Log): Promise<ImageSource> {
  return config.source === 's3' ? S3Source.open(config, metrics, log) : FolderSource.open(config.fileRoot, config.sourceRecheckMs, config.openTileFiles);
}
