/**
 * A token bucket: `burst` tokens at most, refilled at `ratePerSecond`. Bounds how often
 * something may happen on average while letting a short burst through at once.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly ratePerSecond: number,
    private readonly burst: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.tokens = burst;
    this.last = now();
  }

  /** Takes a token when one is left; false when the bucket is empty. */
  take(): boolean {
    if (!this.hasToken()) return false;
    this.tokens--;
    return true;
  }

  /** Whether a token is left, without taking it. */
  hasToken(): boolean {
    const now = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.ratePerSecond);
    this.last = now;
    return this.tokens >= 1;
  }

  /** Whole seconds until the next token (at least 1): a Retry-After. */
  get secondsToNext(): number {
    return Math.max(1, Math.ceil((1 - this.tokens) / this.ratePerSecond));
  }
}
