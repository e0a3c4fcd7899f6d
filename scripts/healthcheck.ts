/**
 * The container's HEALTHCHECK: exits 0 when this container's /health answers 200 within 2 s,
 * else 1. Plain Node, so the image needs no curl or wget.
 */
const port = process.env.PORT ?? '3000';
try {
  const response = await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(2_000) });
  process.exit(response.ok ? 0 : 1);
} catch {
  process.exit(1);
}
