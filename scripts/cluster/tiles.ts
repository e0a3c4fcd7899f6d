/** Mandelbrot tiles at three zoom levels (the sample baked into the image), for load tests and benchmarks. */
export function tilePaths(): string[] {
  const paths: string[] = [];
  for (const size of [512, 1024, 2048]) {
    for (let x = 0; x + size <= 6400; x += size) {
      for (let y = 0; y + size <= 4800; y += size) paths.push(`/iiif/3/mandelbrot.tif/${x},${y},${size},${size}/256,/0/default.jpg`);
    }
  }
  return paths;
}
