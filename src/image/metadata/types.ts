import type { Dimensions } from '../../iiif/plan.js';
import type { Jp2Header } from '../jp2/codestream.js';
import type { TiffPage } from '../tiles/tiff-layout.js';

/** One resolution stored in the file: page 0 is the full image, later pages smaller copies. */
export interface Level extends Dimensions {
  page: number;
  /** The page's tile layout when it is a tiled TIFF page: its stored tiles can be read one by one, by range. */
  tiles: TiffPage | undefined;
}

/**
 * The resolutions a file stores, largest first. The full size is known at once; smaller ones
 * may be read only when a request needs them (a remote pyramid's directories lie far apart).
 */
export interface StoredLevels {
  /** Page 0, the full size. */
  readonly first: Level;
  /** False when the file certainly stores no smaller copy (so a pyramid may be worth building). */
  readonly several: boolean;
  /** Level `index` (0 = full size), reading what it takes; undefined past the smallest. */
  at(index: number): Promise<Level | undefined>;
}

export interface ImageMetadata extends Dimensions {
  levels: StoredLevels;
  /** Whether EXIF orientation must be applied (width/height above are already oriented). */
  autoOrient: boolean;
  /** A JPEG of several scans: decoded whole for any region, so worth a pyramid early. */
  progressive?: boolean;
  /** Set for JPEG 2000, decoded natively; its levels' `page` is OpenJPEG's reduce factor. */
  jp2?: Jp2Header;
}
