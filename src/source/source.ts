import { IiifError } from '../errors.js';
import type { RangeReader } from './range-reader.js';

/**
 * An image's bytes, two ways: by range for the format readers (headers, directories, stored
 * tiles), and whole for decoders that cannot work from ranges (plain JPEG, PNG, WebP, GIF,
 * strip TIFFs, pyramid conversion).
 */
export interface ImageFile {
  readonly reader: RangeReader;
  /**
   * The whole image: a local file's path, or its bytes in memory when no local file can be
   * written (a remote source whose cache folder is unwritable or full). A remote source fetches
   * the object on the first call, once, through its cache.
   */
  whole(): Promise<string | Buffer>;
  /** The bytes already are a local file: whole() costs nothing, and libvips may read the file itself. */
  readonly onDisk: boolean;
  /**
   * Remote files only: brings a range into memory for reads about to follow, without it
   * counting as a use of the disk cache (so reading it there writes nothing to disk).
   */
  readAhead?(offset: number, length: number): Promise<void>;
  /**
   * Remote files only: bytes of this file already at hand (fetched with something else). Reads
   * inside one of them are answered from memory without a request, while memory (bounded)
   * keeps them; false when they do not fit.
   */
  preload?(pieces: readonly Piece[]): boolean;
}

/** Bytes of a file at an offset. */
export interface Piece {
  offset: number;
  bytes: Buffer;
}

/** Where an image's bytes are, once an identifier has been resolved. */
export interface SourceRef {
  identifier: string;
  /** Changes whenever the bytes change; keys every cache and every ETag. */
  version: string;
  lastModified: Date;
  /** The bytes of exactly this version. */
  file: ImageFile;
}

export interface ImageSource {
  /** Resolves an identifier to its current version; throws a 404 IiifError when there is no such image. */
  resolve(identifier: string): Promise<SourceRef>;
  /**
   * Up to `limit` identifiers of the images available, sorted, for the viewer's index page.
   * Optional: a source that cannot enumerate its images cheaply leaves it out.
   */
  list?(limit: number): Promise<string[]>;
  /** Forgets whatever the source keeps for an identifier (cached copies, remembered 404s); true when it held a copy. */
  purge?(identifier: string): Promise<boolean>;
  /** Releases what the source holds open (files kept open for reads) and finishes its cache writes; the process is shutting down. */
  close?(): Promise<void> | void;
}

const SOURCE_CHANGED = 'IIIF_SOURCE_CHANGED';

/**
 * The image changed in its store while a request was reading it: the bytes already read belong
 * to the old version, so the request cannot be finished without mixing two. The next request
 * reads the new version.
 */
export const sourceChanged = (): IiifError =>
  new IiifError(503, SOURCE_CHANGED, 'the image changed in the store while it was being read; retry', { 'retry-after': '1' });

export const isSourceChanged = (error: unknown): boolean => error instanceof IiifError && error.code === SOURCE_CHANGED;
