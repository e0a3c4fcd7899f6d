import { access } from 'node:fs/promises';
import { ServerError } from '../errors.js';

/**
 * A local file that was being decoded disappeared: a cached copy (a source object, a pyramid)
 * was evicted between being handed out and being opened. Preparing the image again fetches or
 * builds it anew (see Images); nothing is wrong with the image itself.
 */
export class InputVanished extends ServerError {
  constructor(options?: ErrorOptions) {
    super('INPUT_VANISHED', 'the file being read was removed', options);
  }
}

/** Whether an error means the input went away (an open that found no file, or InputVanished). */
export const vanished = (error: unknown): boolean => error instanceof InputVanished || (error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';

/**
 * Runs a decode of `input`. When it fails and `input` is a path that no longer exists, the
 * decoder's error (libvips says "cannot read", not "missing") becomes InputVanished.
 */
export async function decoding<T>(input: string | Buffer, decode: (input: string | Buffer) => Promise<T>): Promise<T> {
  try {
    return await decode(input);
  } catch (error) {
    if (typeof input === 'string' && !(await exists(input))) throw new InputVanished({ cause: error });
    throw error;
  }
}

const exists = (path: string): Promise<boolean> =>
  access(path).then(
    () => true,
    () => false,
  );
