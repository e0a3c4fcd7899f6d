/**
 * Collapses concurrent calls for the same key into one: the first caller starts the work, every
 * caller that arrives while it runs gets the same promise (the same value or the same error).
 * Nothing is remembered afterwards; caching the result is the caller's job.
 */
export class SingleFlight<T> {
  private readonly running = new Map<string, Promise<T>>();

  run(key: string, work: () => Promise<T>): Promise<T> {
    const current = this.running.get(key);
    if (current) return current;
    const started = (async () => {
      try {
        return await work();
      } finally {
        this.running.delete(key);
      }
    })();
    this.running.set(key, started);
    return started;
  }

  /** Whether work for `key` is under way (a caller now would share it). */
  has(key: string): boolean {
    return this.running.has(key);
  }

  /** Keys with work under way (for tests and metrics). */
  get size(): number {
    return this.running.size;
  }
}
