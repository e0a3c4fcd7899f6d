import { describe, expect, it } from 'vitest';
import { reasonOf } from '../src/errors.js';

describe('reasonOf', () => {
  it.each([
    ['VipsForeignLoad: "/tmp/my folder/x.jpg" is not a known file format', 'VipsForeignLoad: "…" is not a known file format'],
    ['heifload: /var/cache/iiif/sources/ab.data: bad seek to 1024', 'heifload: …: bad seek to 1024'],
    ['Input file is missing: /srv/images/a b/c.tif', 'Input file is missing: …'],
    ["ENOENT: no such file or directory, open '/root/x/y.tif'", 'ENOENT: no such file or directory, open "…"'],
    ['C:\\Users\\me\\img.jpg: bad', '…: bad'],
    ['open file:///etc/x.png failed', 'open … failed'],
    ['VipsJpeg: premature end of JPEG image\nsecond line /etc/passwd', 'VipsJpeg: premature end of JPEG image'],
  ])('%j → %j', (message, reason) => {
    expect(reasonOf(new Error(message))).toBe(reason);
  });

  it('is short', () => {
    expect(reasonOf('x'.repeat(1000))).toHaveLength(200);
  });
});
