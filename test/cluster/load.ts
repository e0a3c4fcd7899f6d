/**
 * Continuous client load for the cluster tests: a few workers fetching tiles through the
 * balancer one after another, on loopback only, bounded in time. Every response that is not a
 * complete 200 image, and every network error, counts as a failure.
 */
export class TileLoad {
  ok = 0;
  readonly failures: string[] = [];
  private running = false;
  private workers: Array<Promise<void>> = [];

  constructor(
    private readonly baseUrl: string,
    private readonly paths: string[],
    private readonly workerCount = 4,
    /** A short pause between a worker's requests keeps the shared machine usable. */
    private readonly pauseMs = 5,
    /** The load stops by itself after this long, whatever the test does. */
    private readonly maxMs = 5 * 60_000,
  ) {}

  get failed(): number {
    return this.failures.length;
  }

  start(): void {
    this.running = true;
    const stopAt = Date.now() + this.maxMs;
    this.workers = Array.from({ length: this.workerCount }, async (_, worker) => {
      for (let i = worker; this.running && Date.now() < stopAt; i += this.workerCount) {
        await this.fetchOne(this.paths[i % this.paths.length]!);
        await new Promise((resolve) => setTimeout(resolve, this.pauseMs));
      }
    });
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.workers);
  }

  /** Resolves once `count` more requests have succeeded (bounded by `deadlineMs`). */
  async successes(count: number, deadlineMs = 60_000): Promise<void> {
    const target = this.ok + count;
    const deadline = Date.now() + deadlineMs;
    while (this.ok < target) {
      if (Date.now() > deadline) throw new Error(`only ${this.ok} of ${target} requests succeeded within ${deadlineMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  private async fetchOne(path: string): Promise<void> {
    try {
      const response = await fetch(this.baseUrl + path, { signal: AbortSignal.timeout(30_000) });
      const body = Buffer.from(await response.arrayBuffer());
      const length = Number(response.headers.get('content-length'));
      if (response.status === 200 && body.length > 0 && body.length === length) this.ok++;
      else this.failures.push(`HTTP ${response.status}, ${body.length} bytes`);
    } catch (error) {
      const cause = (error as { cause?: { code?: string; message?: string } }).cause;
      this.failures.push(cause?.code ?? cause?.message ?? String(error));
    }
  }
}

/** How many image requests a replica has answered, from its own /metrics. */
export async function imagesServed(port: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  let total = 0;
  for (const match of text.matchAll(/^http_request_duration_seconds_count\{[^}]*route="image"[^}]*\} (\d+)/gm)) total += Number(match[1]);
  return total;
}
