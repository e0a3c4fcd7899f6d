import { createRequire } from 'node:module';

interface J2KEncoder {
  getDecodedBuffer(info: { width: number; height: number; bitsPerSample: number; componentCount: number; isSigned: boolean }): Uint8Array;
  setQuality(lossless: boolean, quality: number): void;
  encode(): void;
  getEncodedBuffer(): Uint8Array;
}

/** Encodes raw pixels as a JPEG 2000 codestream with OpenJPEG (test fixtures only). */
export async function encodeJ2k(pixels: Buffer, width: number, height: number, channels: number, bitsPerSample = 8): Promise<Buffer> {
  const require = createRequire(import.meta.url);
  const factory = require('@cornerstonejs/codec-openjpeg/wasmjs') as (o: object) => Promise<{ J2KEncoder: new () => J2KEncoder }>;
  const { J2KEncoder } = await factory({ print: () => undefined, printErr: () => undefined });
  const encoder = new J2KEncoder();
  encoder.getDecodedBuffer({ width, height, bitsPerSample, componentCount: channels, isSigned: false }).set(pixels);
  encoder.setQuality(true, 0);
  encoder.encode();
  return Buffer.from(encoder.getEncodedBuffer());
}

/** Wraps a codestream in the minimal JP2 boxes: signature, file type, header, codestream. */
export function jp2Container(codestream: Buffer, width: number, height: number, channels: number): Buffer {
  const box = (type: string, body: Buffer) => {
    const head = Buffer.alloc(8);
    head.writeUInt32BE(8 + body.length, 0);
    head.write(type, 4, 'latin1');
    return Buffer.concat([head, body]);
  };
  const ihdr = Buffer.alloc(14);
  ihdr.writeUInt32BE(height, 0);
  ihdr.writeUInt32BE(width, 4);
  ihdr.writeUInt16BE(channels, 8);
  ihdr.set([7, 7, 0, 0], 10);
  const colr = Buffer.from([1, 0, 0, 0, 0, 0, channels >= 3 ? 16 : 17]);
  return Buffer.concat([
    box('jP  ', Buffer.from([0x0d, 0x0a, 0x87, 0x0a])),
    box('ftyp', Buffer.from('jp2 \u0000\u0000\u0000\u0000jp2 ', 'latin1')),
    box('jp2h', Buffer.concat([box('ihdr', ihdr), box('colr', colr)])),
    box('jp2c', codestream),
  ]);
}
