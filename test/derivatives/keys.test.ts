import { describe, expect, it } from 'vitest';
import { parseKey, versionHash, versionKeys } from '../../src/derivatives/keys.js';

describe('derivative keys', () => {
  it('name a source version by a fixed-length hash of its ETag, quotes or not', () => {
    expect(versionHash('"3858f62230ac3c915f300c664312c63f"')).toBe(versionHash('3858f62230ac3c915f300c664312c63f'));
    expect(versionHash('abc-2')).toMatch(/^[0-9a-f]{32}$/);
    expect(versionHash('abc-2')).not.toBe(versionHash('abc-3'));
  });

  it('lay a version out under prefix, source key and hash, and parse back from the right', () => {
    const keys = versionKeys('derivatives/', 'deep/dir/a.jpg', 'e1');
    const hash = versionHash('e1');
    expect(keys).toEqual({
      dir: `derivatives/deep/dir/a.jpg/${hash}/`,
      pyramid: `derivatives/deep/dir/a.jpg/${hash}/pyramid.tif`,
      info: `derivatives/deep/dir/a.jpg/${hash}/info.json`,
      complete: `derivatives/deep/dir/a.jpg/${hash}/complete`,
      lease: `derivatives/deep/dir/a.jpg/${hash}/lease`,
    });
    expect(parseKey('derivatives/', keys.pyramid)).toEqual({ sourceKey: 'deep/dir/a.jpg', hash, file: 'pyramid.tif' });
    // A source whose own key looks like a derivative's still parses to itself.
    const nested = versionKeys('derivatives/', `a.jpg/${hash}/pyramid.tif`, 'e2');
    expect(parseKey('derivatives/', nested.complete)).toEqual({ sourceKey: `a.jpg/${hash}/pyramid.tif`, hash: versionHash('e2'), file: 'complete' });
  });

  it('parse nothing that is not a derivative object', () => {
    const hash = versionHash('e1');
    for (const key of [
      `other/a.jpg/${hash}/pyramid.tif`,
      `derivatives/a.jpg/${hash}/notes.txt`,
      `derivatives/a.jpg/${hash.slice(1)}/pyramid.tif`,
      `derivatives/${hash}/pyramid.tif`,
      'derivatives/.conditional-write-probe-x',
    ]) {
      expect(parseKey('derivatives/', key), key).toBeUndefined();
    }
  });
});
