import { setFlagsFromString } from 'node:v8';

/**
 * How far V8 lets the old generation grow past what survived a full collection before it
 * collects again: 200 % (a limit of three times the live size, plus the young generation).
 *
 * Why: the server's live heap is small (20–30 MB: the caches keep their bytes outside it), while
 * requests that wait on S3 outlive young-generation collections, so V8 grows the young
 * generation to its maximum. V8 starts marking the old generation as soon as the room left
 * under its limit is no larger than the young generation, and it sets that limit after each
 * full collection from the live size times a factor it derives from how cheap collecting looks
 * (1.1–1.3 for a heap this small). The room was short from the start: a fresh server under
 * cold S3 tiles ran a full collection every 250–300 ms, a third of its CPU (bench/README.md,
 * fleet target c). A fixed factor of 3 leaves room for seconds of promotions; memory stays
 * bounded by the old generation's maximum (--max-old-space-size), which this does not change.
 */
export const HEAP_GROWING_PERCENT = 200;

/** Applies HEAP_GROWING_PERCENT; V8 reads it at every full collection, so this works at any time. */
export function growHeapInLargerSteps(): void {
  setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
}
