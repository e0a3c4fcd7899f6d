import { Memo } from '../../cache/memo.js';
import type { RangeReader } from '../../source/range-reader.js';
import { checkTileParts, type Jp2Header } from './codestream.js';
import { Jp2LevelDecoder, planJp2Decode, type Jp2DecodeRequest, type Jp2Raster } from './decoder.js';
import { tileStructureBytes } from './setup-cost.js';

/**
 * OpenJPEG decoders kept open between requests, so that the tiles of a hot JPEG 2000 image cost
 * less than the first. An image of a single tile (archives' usual untiled JP2) makes OpenJPEG
 * read the whole codestream and set up every precinct and code-block for each decode; a decoder
 * that has done so once decodes other areas of the same level from what it holds (measured on a
 * 12000×9000 archival JP2: ~60 ms of CPU per 256-px tile instead of ~100). What a decoder holds
 * (a copy of the codestream and the tile's structures, ~80 MB there) is counted against a byte
 * budget; decoders are closed when idle for a while, least recently used first when the budget
 * is short, and when their file is purged. Tiled images and images whose components the JP2
 * header remaps get a decoder per request, as before: OpenJPEG cannot decode those twice.
 */

/** How long a decoder is kept unused before it is closed (and its memory handed back). */
const IDLE_MS = 2_000;
/** File versions whose tile-part headers are remembered as checked. */
const CHECKED_FILES = 1024;

/** A JPEG 2000 file as the pool needs it. */
export interface Jp2File {
  /** Changes whenever the file's bytes do (identifier and version): decoders are kept under it. */
  key: string;
  header: Jp2Header;
  reader: RangeReader;
  /** The whole file for OpenJPEG (a local file's path, or its bytes), asked for only to open a decoder. */
  whole(): Promise<string | Buffer>;
}

interface Lease {
  decoder: Jp2LevelDecoder;
  /** File key and level; undefined for a decoder used once and closed. */
  key?: string;
  /** Counted against the budget while open. */
  bytes: number;
  timer?: NodeJS.Timeout;
}

export class Jp2Decoders {
  /** Idle decoders, least recently used first. */
  private idle: Lease[] = [];
  /** Kept decoders decoding now, by file key and level. */
  private readonly busy = new Map<string, number>();
  /** Decodes waiting for a busy decoder of their file and level, by key, first come first served. */
  private readonly waiting = new Map<string, Array<() => void>>();
  /** Bytes of the kept decoders open now, idle or decoding. */
  private openBytes = 0;
  private closed = false;
  private readonly checked = new Memo<true>({ max: CHECKED_FILES });

  private readonly threads: number;
  private readonly idleMs: number;

  /** `threads`: OpenJPEG threads per decode (DecoderOptions); `idleMs`: how long a decoder is kept unused. */
  constructor(
    private readonly maxBytes: number,
    options: { threads?: number; idleMs?: number } = {},
  ) {
    this.threads = options.threads ?? 1;
    this.idleMs = options.idleMs ?? IDLE_MS;
  }

  /**
   * One area of one level, as decodeJp2 describes it (the same errors), with a kept decoder of
   * this file and level when one is idle.
   */
  async decode(file: Jp2File, request: Jp2DecodeRequest): Promise<Jp2Raster> {
    const decode = planJp2Decode(file.header, request);
    // Hostile tile-part headers are refused before OpenJPEG sees them, once per file version.
    await this.checked.get(file.key, async () => {
      await checkTileParts(file.reader, file.header);
      return true;
    });
    const lease = await this.acquire(file, decode.reduce);
    let decoded = false;
    try {
      const raster = await lease.decoder.decode(decode);
      decoded = true;
      return raster;
    } finally {
      this.release(lease, decoded);
    }
  }

  /** Decoders open and the bytes they are counted for (idle and decoding). */
  usage(): { idle: number; bytes: number } {
    return { idle: this.idle.length, bytes: this.openBytes };
  }

  /** Closes the idle decoders of every file whose key starts with `prefix` (it was purged). */
  forget(prefix: string): void {
    for (const lease of this.idle.filter((kept) => kept.key!.startsWith(prefix))) this.close(lease);
    this.checked.forgetPrefix(prefix);
  }

  /** Closes every idle decoder, and the others as they finish (the server is shutting down). */
  clear(): void {
    this.closed = true;
    for (const lease of [...this.idle]) this.close(lease);
  }

  private async acquire(file: Jp2File, reduce: number): Promise<Lease> {
    const key = `${file.key}#${reduce}`;
    const bytes = reusable(file.header) && !this.closed ? decoderBytes(file.header, file.reader.size) : Infinity;
    for (;;) {
      const at = this.idle.findLastIndex((kept) => kept.key === key);
      if (at >= 0) {
        const [lease] = this.idle.splice(at, 1);
        clearTimeout(lease!.timer);
        this.markBusy(key);
        return lease!;
      }
      // Over budget while a decoder of this file and level is busy: wait for it. It is free
      // within one decode (~60 ms of CPU on the 40 MB benchmark file), where a decoder of its
      // own would cost the whole read and set-up again (~110 ms).
      if (this.openBytes + bytes > this.maxBytes && bytes <= this.maxBytes && this.busy.has(key)) {
        await new Promise<void>((resolve) => this.waiting.set(key, [...(this.waiting.get(key) ?? []), resolve]));
        continue;
      }
      while (this.openBytes + bytes > this.maxBytes && this.idle.length > 0 && bytes <= this.maxBytes) this.close(this.idle[0]!);
      if (this.openBytes + bytes > this.maxBytes) return { decoder: await this.open(file, reduce, false), bytes: 0 };
      // Counted before the file is fetched, so decodes starting meanwhile see the budget taken.
      this.openBytes += bytes;
      this.markBusy(key);
      try {
        return { decoder: await this.open(file, reduce, true), key, bytes };
      } catch (error) {
        this.openBytes -= bytes;
        this.released(key);
        throw error;
      }
    }
  }

  private async open(file: Jp2File, reduce: number, reusable: boolean): Promise<Jp2LevelDecoder> {
    return new Jp2LevelDecoder(await file.whole(), { size: file.reader.size, reduce, reusable, threads: this.threads });
  }

  private markBusy(key: string): void {
    this.busy.set(key, (this.busy.get(key) ?? 0) + 1);
  }

  /** Back to the idle list after a decode that succeeded; closed otherwise, or when not kept. */
  private release(lease: Lease, decoded: boolean): void {
    const keep = lease.key !== undefined && decoded && !this.closed;
    if (keep) {
      lease.timer = setTimeout(() => this.close(lease), this.idleMs).unref();
      this.idle.push(lease);
    } else {
      this.close(lease);
    }
    if (lease.key !== undefined) this.released(lease.key);
  }

  /** A kept decoder of `key` is no longer busy: the next decode waiting for one looks again. */
  private released(key: string): void {
    const busy = this.busy.get(key)! - 1;
    if (busy > 0) this.busy.set(key, busy);
    else this.busy.delete(key);
    const queue = this.waiting.get(key);
    const next = queue?.shift();
    if (queue?.length === 0) this.waiting.delete(key);
    next?.();
  }

  private close(lease: Lease): void {
    clearTimeout(lease.timer);
    this.idle = this.idle.filter((kept) => kept !== lease);
    this.openBytes -= lease.bytes;
    // Resolves once OpenJPEG's memory is freed on the pool; nothing there can fail.
    void lease.decoder.close();
  }
}

/** Whether OpenJPEG can decode more areas with the decoder that decoded the first. */
const reusable = (header: Jp2Header) => header.tile.across * header.tile.down === 1 && !header.remapsComponents;

/**
 * What a decoder of a single-tile image holds once it has decoded: OpenJPEG's copy of the
 * codestream (about the file) and the precincts and code-blocks of the tile (setup-cost.ts).
 * Measured on the 12000×9000 archival JP2 of 38.6 MiB: 76 MiB resident per decoder (68 estimated).
 */
function decoderBytes(header: Jp2Header, fileSize: number): number {
  return fileSize + tileStructureBytes(header.width, header.height, header.components);
}
