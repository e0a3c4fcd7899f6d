import { overloaded } from '../errors.js';
import type { Metrics } from '../metrics.js';

/**
 * Cheap work (tile-sized renders) and expensive work (large or full-image renders) wait in
 * separate lanes, so a burst of big renders never starves the tiles a viewer is waiting for.
 */
export type Lane = 'cheap' | 'expensive';

export interface LaneLimits {
  /** Renders running at once in this lane. */
  concurrency: number;
  /** Requests allowed to wait; one more is answered 503 at once. */
  queue: number;
  /** Retry-After on this lane's 503s: tiles free up in milliseconds, big renders take longer. */
  retryAfterSeconds: number;
}

interface Waiter {
  start: () => void;
  timer: NodeJS.Timeout;
}

class Semaphore {
  private running = 0;
  private readonly waiting: Waiter[] = [];

  constructor(private readonly limits: LaneLimits) {}

  get queued(): number {
    return this.waiting.length;
  }

  /** Resolves when a slot is free; rejects at once when the queue is full or after `waitMs`. */
  acquire(waitMs: number, onReject: (reason: 'queue-full' | 'timeout') => Error): Promise<void> {
    if (this.running < this.limits.concurrency) {
      this.running++;
      return Promise.resolve();
    }
    if (this.waiting.length >= this.limits.queue) return Promise.reject(onReject('queue-full'));
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        start: () => {
          clearTimeout(waiter.timer);
          this.running++;
          resolve();
        },
        timer: setTimeout(() => {
          this.waiting.splice(this.waiting.indexOf(waiter), 1);
          reject(onReject('timeout'));
        }, waitMs),
      };
      this.waiting.push(waiter);
    });
  }

  release(): void {
    this.running--;
    this.waiting.shift()?.start();
  }
}

export class Admission {
  private readonly lanes: Record<Lane, Semaphore>;
  private readonly rejections;
  private readonly queueDepth;

  constructor(
    private readonly limits: Record<Lane, LaneLimits>,
    private readonly maxWaitMs: number,
    metrics: Metrics,
  ) {
    this.lanes = { cheap: new Semaphore(limits.cheap), expensive: new Semaphore(limits.expensive) };
    this.rejections = metrics.counter('iiif_admission_rejections_total', 'Requests answered 503 by admission control, by lane and reason.', ['lane', 'reason']);
    this.queueDepth = metrics.gauge('iiif_admission_queue_depth', 'Requests waiting for a render slot, by lane.', ['lane']);
  }

  /** Runs `work` when its lane has room; 503 with Retry-After when the lane is saturated. */
  async run<T>(lane: Lane, work: () => Promise<T>): Promise<T> {
    const semaphore = this.lanes[lane];
    const acquired = semaphore.acquire(this.maxWaitMs, (reason) => {
      this.rejections.inc({ lane, reason });
      const why = reason === 'timeout' ? 'waited too long' : 'queue is full';
      return overloaded(`the server is busy (${lane} renders ${why}); retry shortly`, this.limits[lane].retryAfterSeconds);
    });
    this.queueDepth.set({ lane }, semaphore.queued);
    try {
      await acquired;
    } finally {
      this.queueDepth.set({ lane }, semaphore.queued);
    }
    try {
      return await work();
    } finally {
      semaphore.release();
      this.queueDepth.set({ lane }, semaphore.queued);
    }
  }
}
