/** Where an image's bytes are, once an identifier has been resolved. */
export interface SourceRef {
  identifier: string;
  /** A readable local file holding the image. */
  path: string;
  /** Changes whenever the bytes change; keys every cache and every ETag. */
  version: string;
  lastModified: Date;
}

export interface ImageSource {
  /** Resolves an identifier to a local file; throws a 404 IiifError when there is no such image. */
  resolve(identifier: string): Promise<SourceRef>;
}
