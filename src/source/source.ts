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
  /**
   * Up to `limit` identifiers of the images available, sorted, for the viewer's index page.
   * Optional: a source that cannot enumerate its images cheaply leaves it out.
   */
  list?(limit: number): Promise<string[]>;
}
