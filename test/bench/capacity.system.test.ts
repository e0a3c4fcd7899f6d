/**
 * A short real capacity run: the image built and run as the task definition runs it (Docker),
 * images from S3 on loopback through the throttling proxy, warm and cold.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { measureCapacity } from '../../bench/capacity.js';
import { parseCapacity } from '../../deploy/src/capacity.js';
import { deriveSizing } from '../../deploy/src/sizing.js';
import { makeFixtures } from '../fixtures.js';

describe('capacity run', () => {
  // Builds the image and runs real containers: minutes on a loaded machine. Nothing asserted
  // here depends on speed (the SLO is set far out of reach of any plausible delay).
  it('measures the image run as the task runs it, from a throttled S3, warm and cold, into what deploy:render reads', async () => {
    const { root } = await makeFixtures();
    const size = { width: 5000, height: 3400 };
    // 17 megapixels each: the flat JPEG is above the pyramid threshold, so a cold copy is converted.
    await sharp({ create: { ...size, channels: 3, background: '#468' } }).tiff({ tile: true, pyramid: true, compression: 'jpeg' }).toFile(join(root, 'warm.tif'));
    await writeFile(join(root, 'flat.jpg'), await sharp({ create: { ...size, channels: 3, background: '#864' } }).jpeg().toBuffer());
    const options = {
      cpus: 1,
      memoryLimitMiB: 2048,
      sloP99Ms: 120_000,
      headroom: 0.7,
      startRate: 10,
      factor: 2,
      maxRate: 20,
      refineSteps: 0,
      holdSeconds: 3,
      repeats: 1,
      warmCopies: 2,
      coldEvery: 10,
      flatEvery: 2,
      s3: { firstByteMs: 100, bytesPerSecond: 85e6 },
      baseImage: 'local/node:22-bookworm-slim',
      smoke: false,
      out: '',
    };
    const log: string[] = [];
    const capacity = await measureCapacity(options, { dataDir: root, pyramids: ['warm.tif'], flats: ['flat.jpg'], size }, (line) => log.push(line));
    expect(capacity.steps.map((s) => s.offeredRate)).toEqual([10, 20]);
    for (const s of capacity.steps) {
      expect(s.failure).toBeUndefined();
      expect(s.repeats).toBe(1);
      expect(s.coresUsed).toBeGreaterThan(0);
      expect(s.peakRssMiB).toBeGreaterThan(20);
      // Cold opens happened in every step (every 10th request), each waiting for its S3 fetch.
      expect(s.coldP99Ms).toBeGreaterThanOrEqual(options.s3.firstByteMs);
    }
    expect(capacity.sustainableRequestsPerSecond).toBe(20);
    expect(capacity.setup).toMatch(/on local\/node:22-bookworm-slim \(Node v22\.\d+\.\d+\), run as the ECS task definition runs it: docker run --cpus 1 --memory 2048m/);
    const parsed = parseCapacity(JSON.parse(JSON.stringify(capacity)), 'the run');
    expect(deriveSizing(parsed).requestsPerTargetPerMinute).toBe(Math.floor(20 * 60 * 0.7));
  }, 30 * 60_000);
});
