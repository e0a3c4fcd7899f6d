import fc from 'fast-check';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { formatDecimal } from '../../src/iiif/numbers.js';
import { rotatedSize } from '../../src/iiif/plan.js';

/**
 * The planner checks the output limits on the rotated canvas it predicts; this holds it to what
 * libvips really makes, so a limit can never be passed by a pixel the prediction missed.
 */
describe('rotated canvas', () => {
  it('matches what sharp produces for any size and angle', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 400 }),
        fc.integer({ min: 1, max: 400 }),
        // Angles as a request can write them: up to two decimals.
        fc.integer({ min: 0, max: 35_999 }).map((hundredths) => Number(formatDecimal(hundredths / 100))),
        async (width, height, degrees) => {
          const { info } = await sharp({ create: { width, height, channels: 3, background: '#fff' } })
            .rotate(degrees, { background: '#000' })
            .raw()
            .toBuffer({ resolveWithObject: true });
          expect(rotatedSize({ width, height }, degrees)).toEqual({ width: info.width, height: info.height });
        },
      ),
      { numRuns: 300 },
    );
  });
});
