import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { S3Store } from '../../bench/s3-store.js';

describe('the S3 stand-in', () => {
  it('deletes the objects it kept when it closes', async () => {
    const store = await S3Store.start();
    await store.put('kept.bin', Buffer.alloc(1024, 7));
    expect(existsSync(store.directory)).toBe(true);
    await store.close();
    expect(existsSync(store.directory)).toBe(false);
  });
});
