import type { Dimensions } from '../../iiif/plan.js';
import type { TiffPage } from '../tiles/tiff-layout.js';

/** One resolution stored in the file: page 0 is the full image, later pages smaller copies. */
export interface Level extends Dimensions {
  page: number;
}

export interface ImageMetadata extends Dimensions {
  /** Full-size first, then each smaller stored resolution (pyramidal TIFF pages), largest first. */
  levels: Level[];
  /** Whether EXIF orientation must be applied (width/height above are already oriented). */
  autoOrient: boolean;
  /** The tile layout of a tiled TIFF on disk, for sending stored JPEG tiles as they are. */
  tiffPages: TiffPage[] | undefined;
  /** A JPEG of several scans: decoded whole for any region, so worth a pyramid early. */
  progressive?: boolean;
}
