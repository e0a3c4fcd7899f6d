import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IiifError } from '../../src/errors.js';
import { parseImageRequest, parseQualityAndFormat, parseRegion, parseRotation, parseSize2, parseSize3 } from '../../src/iiif/parse.js';

function status(fn: () => unknown): number | undefined {
  try {
    fn();
    return undefined;
  } catch (error) {
    return error instanceof IiifError ? error.statusCode : -1;
  }
}

describe('region', () => {
  it.each([
    ['full', { kind: 'full' }],
    ['square', { kind: 'square' }],
    ['0,10,20,30', { kind: 'pixels', x: 0, y: 10, w: 20, h: 30 }],
    ['pct:0,10.5,20,.5', { kind: 'percent', x: 0, y: 10.5, w: 20, h: 0.5 }],
  ])('parses %s', (text, expected) => {
    expect(parseRegion(text)).toEqual(expected);
  });

  it.each(['', 'Full', '1,2,3', '1,2,3,4,5', '-1,0,10,10', '+1,0,10,10', '1e2,0,10,10', '0x10,0,1,1', ' 1,0,1,1', '0,0,0,10', '0,0,10,0', 'pct:0,0,0,10', 'pct:a,0,1,1', '1.5,0,10,10', 'pct:', 'pct:1,1,1,1,'])(
    'rejects %j with 400',
    (text) => {
      expect(status(() => parseRegion(text))).toBe(400);
    },
  );
});

describe('size 3.0', () => {
  it.each([
    ['max', { kind: 'max', upscale: false }],
    ['^max', { kind: 'max', upscale: true }],
    ['100,', { kind: 'width', w: 100, upscale: false }],
    [',50', { kind: 'height', h: 50, upscale: false }],
    ['^100,', { kind: 'width', w: 100, upscale: true }],
    ['pct:50', { kind: 'percent', n: 50, upscale: false }],
    ['^pct:150', { kind: 'percent', n: 150, upscale: true }],
    ['100,50', { kind: 'exact', w: 100, h: 50, upscale: false }],
    ['!100,50', { kind: 'confined', w: 100, h: 50, upscale: false }],
    ['^!100,50', { kind: 'confined', w: 100, h: 50, upscale: true }],
  ])('parses %s', (text, expected) => {
    expect(parseSize3(text)).toEqual(expected);
  });

  it.each(['full', '^full', ',', '', '!100,', '!,100', 'pct:0', 'pct:-5', '100', '100,50,', '^^max', 'max ', '!^100,50', 'a,'])(
    'rejects %j with 400',
    (text) => {
      expect(status(() => parseSize3(text))).toBe(400);
    },
  );
});

describe('size 2.1', () => {
  it('accepts full and treats every scaled form as allowed to upscale (sizeAboveFull)', () => {
    expect(parseSize2('full')).toEqual({ kind: 'full' });
    expect(parseSize2('max')).toEqual({ kind: 'max', upscale: false });
    expect(parseSize2('100,')).toEqual({ kind: 'width', w: 100, upscale: true });
    expect(parseSize2('pct:150')).toEqual({ kind: 'percent', n: 150, upscale: true });
  });

  it('rejects the 3.0-only ^ prefix', () => {
    expect(status(() => parseSize2('^max'))).toBe(400);
    expect(status(() => parseSize2('^100,'))).toBe(400);
  });
});

describe('rotation', () => {
  it.each([
    ['0', { mirror: false, degrees: 0 }],
    ['22.5', { mirror: false, degrees: 22.5 }],
    ['!90', { mirror: true, degrees: 90 }],
    ['360', { mirror: false, degrees: 360 }],
  ])('parses %s', (text, expected) => {
    expect(parseRotation(text)).toEqual(expected);
  });

  it.each(['', '-90', '361', '!!90', '90!', '1e1', 'ninety', '!'])('rejects %j with 400', (text) => {
    expect(status(() => parseRotation(text))).toBe(400);
  });
});

describe('quality and format', () => {
  it('splits on the last dot', () => {
    expect(parseQualityAndFormat('gray.webp')).toEqual({ quality: 'gray', format: 'webp' });
  });

  it.each(['default', '.jpg', 'default.', 'best.jpg', 'default.bmp', 'default.jp2', 'default.pdf', 'default.jpg.png', 'DEFAULT.jpg', 'default.JPG'])(
    'rejects %j with 400',
    (text) => {
      expect(status(() => parseQualityAndFormat(text))).toBe(400);
    },
  );
});

describe('any request line', () => {
  it('fails only with a 400 IiifError, never another exception', () => {
    const segment = fc.oneof(
      fc.string(),
      fc.stringMatching(/^[\^!]?(pct:)?[0-9.,:a-z]{0,12}$/),
      fc.constantFrom('full', 'max', '^max', 'square', '0', '!0', 'default.jpg', 'gray.png'),
    );
    fc.assert(
      fc.property(fc.constantFrom(2 as const, 3 as const), segment, segment, segment, segment, (version, r, s, rot, q) => {
        const result = status(() => parseImageRequest(version, r, s, rot, q));
        return result === undefined || result === 400;
      }),
      { numRuns: 5000 },
    );
  });
});
