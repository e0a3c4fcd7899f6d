/** Where an image's bytes are, once an identifier has been resolved. */
export interface SourceRef {
  identifier: string;
  /** A readable local file holding the image (or, when `bytes` is set, only a name for it). */
  path: string;
  /**
   * The image itself, when no local file could be written (a remote source whose disk cache is
   * unwritable or full). Readers use these bytes instead of `path`.
   */
  bytes?: Buffer;
  /** Changes whenever the bytes change; keys every cache and every ETag. */
  version: string;
  lastModified: Date;
}

export interface ImageSource {
  /** Resolves an identifier to a local file; throws a 404 IiifError when there is no such image. */
  resolve(identifier: string): Promise<SourceRef>;
  /**
   * Up to `limit` identifiers of the images available, sorted, for the viewer's index page.
   * Optional: a source that cannot enumerate its images cheaply leaves it out.
   */
  list?(limit: number): Promise<string[]>;
  /** Forgets whatever the source keeps for an identifier (cached copies, remembered 404s); true when it held a copy. */
  purge?(identifier: string): Promise<boolean>;
}

/** What sharp should read for a resolved source. */
export const sourceInput = (ref: SourceRef): string | Buffer => ref.bytes ?? ref.path;
