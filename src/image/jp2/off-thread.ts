import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

export interface FrameInfo {
  width: number;
  height: number;
  bitsPerSample: number;
  componentCount: number;
}

/**
 * Runs in the worker (plain CommonJS, so it needs no build step and runs the same from src/
 * under the tests and from dist/): loads OpenJPEG's WebAssembly, decodes the codestream, and
 * hands the pixels back without a copy.
 */
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
require(workerData.codec)({ print() {}, printErr() {} }).then(({ J2KDecoder }) => {
  const decoder = new J2KDecoder();
  try {
    decoder.getEncodedBuffer(workerData.stream.length).set(workerData.stream);
    decoder.decode();
    const { width, height, bitsPerSample, componentCount } = decoder.getFrameInfo();
    const pixels = new Uint8Array(decoder.getDecodedBuffer());
    parentPort.postMessage({ info: { width, height, bitsPerSample, componentCount }, pixels }, [pixels.buffer]);
  } catch (error) {
    parentPort.postMessage({ error: String(error) });
  } finally {
    if (decoder.delete) decoder.delete();
  }
});
`;

/**
 * Decodes a JPEG 2000 codestream on a worker thread of its own. OpenJPEG as WebAssembly runs
 * synchronously: on the main thread a 9 megapixel image held the event loop for 1.2 s (a
 * 12000×9000 one for about 25 s), so /health and every tile waited, and a load balancer's health
 * check would have taken the container out. The worker also takes the decoder's memory with it
 * when it ends, where the in-process module kept its grown heap for good.
 */
export function decodeOffThread(stream: Buffer): Promise<{ info: FrameInfo; pixels: Uint8Array }> {
  const codec = createRequire(import.meta.url).resolve('@cornerstonejs/codec-openjpeg/decodewasmjs');
  const worker = new Worker(WORKER, { eval: true, workerData: { codec, stream } });
  return new Promise((resolve, reject) => {
    worker.once('message', (message: { info: FrameInfo; pixels: Uint8Array } | { error: string }) => {
      void worker.terminate();
      if ('error' in message) reject(new Error(message.error));
      else resolve(message);
    });
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`the JPEG 2000 decoder stopped (exit code ${code})`)));
  });
}
