import type { RangeReader } from '../../source/range-reader.js';

const READ_BYTES = 64 * 1024;

/**
 * How many scans (SOS segments) a JPEG has, counting no further than `stopAfter + 1`. A
 * progressive (or multi-scan) JPEG is decoded by running every scan over the whole image, and
 * nothing in the format bounds their number: a 174 KB file of 3960×3960 with 2,649 legal scans
 * cost about 10 s of CPU per decode, for any region of it. Counting is a walk over the markers,
 * reading the image once in small pieces (a progressive JPEG is decoded from all of it anyway),
 * with no decoding.
 */
export async function countJpegScans(reader: RangeReader, stopAfter: number): Promise<number> {
  const counter = new ScanCounter(stopAfter);
  for (let offset = 0; !counter.done && offset < reader.size; offset += READ_BYTES) {
    counter.feed(await reader.read(offset, Math.min(READ_BYTES, reader.size - offset)));
  }
  return counter.scans;
}

const SOS = 0xda;
const EOI = 0xd9;

/** Markers that stand alone, without a length: SOI, RST0–RST7, TEM. */
const standalone = (code: number): boolean => code === 0xd8 || (code >= 0xd0 && code <= 0xd7) || code === 0x01;

/**
 * The marker walk as a state machine fed piece by piece: segment lengths may straddle pieces.
 * Entropy-coded data follows each SOS up to the next marker; inside it 0xFF is always followed
 * by 0x00 (a stuffed byte), a restart marker or fill, so any other code ends the data.
 */
class ScanCounter {
  scans = 0;
  done = false;
  private state: 'marker' | 'code' | 'length-high' | 'length-low' | 'segment' | 'entropy' | 'entropy-ff' = 'marker';
  private remaining = 0;
  private length = 0;
  private inScan = false;

  constructor(private readonly stopAfter: number) {}

  feed(bytes: Buffer): void {
    let i = 0;
    while (i < bytes.length && !this.done) {
      switch (this.state) {
        case 'marker':
          // Anything but 0xFF here is a damaged file; skipping to the next 0xFF is what decoders do.
          i = indexOrEnd(bytes, i);
          if (i < bytes.length) {
            this.state = 'code';
            i++;
          }
          break;
        case 'code':
          this.marker(bytes[i++]!);
          break;
        case 'length-high':
          this.length = bytes[i++]! << 8;
          this.state = 'length-low';
          break;
        case 'length-low':
          this.remaining = Math.max(0, (this.length | bytes[i++]!) - 2);
          this.state = 'segment';
          break;
        case 'segment': {
          const skipped = Math.min(this.remaining, bytes.length - i);
          this.remaining -= skipped;
          i += skipped;
          if (this.remaining === 0) this.state = this.inScan ? 'entropy' : 'marker';
          break;
        }
        case 'entropy':
          i = indexOrEnd(bytes, i);
          if (i < bytes.length) {
            this.state = 'entropy-ff';
            i++;
          }
          break;
        case 'entropy-ff': {
          const code = bytes[i++]!;
          if (code === 0x00 || (code >= 0xd0 && code <= 0xd7)) this.state = 'entropy';
          else if (code !== 0xff) this.marker(code);
          break;
        }
      }
    }
  }

  private marker(code: number): void {
    if (code === 0xff) return; // fill byte: the code follows
    this.inScan = false;
    if (code === EOI) {
      this.done = true;
      return;
    }
    if (standalone(code)) {
      this.state = 'marker';
      return;
    }
    if (code === SOS) {
      this.scans++;
      this.inScan = true;
      if (this.scans > this.stopAfter) this.done = true;
    }
    this.state = 'length-high';
  }
}

function indexOrEnd(bytes: Buffer, from: number): number {
  const at = bytes.indexOf(0xff, from);
  return at === -1 ? bytes.length : at;
}
