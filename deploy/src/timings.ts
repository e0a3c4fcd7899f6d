/**
 * The stop sequence's timings, chosen together from the server's own bounds. When ECS stops a
 * task behind an ALB it first deregisters the target: the ALB sends it nothing new and waits
 * up to the deregistration delay for requests in flight (ending early once there are none);
 * only then does ECS send SIGTERM, and SIGKILL `stopTimeout` seconds later. So:
 *
 *   longest request      = render-slot wait + one whole S3 fetch + a pyramid built on first touch
 *   deregistration delay = longest request  (requests in flight finish before SIGTERM)
 *   drain delay          = short            (the target is already out of the ALB)
 *   drain timeout        = drain delay + longest request  (for anything still open)
 *   stopTimeout          = drain timeout + margin         (SIGKILL only after the server's own exit)
 */
import { settings } from './settings.js';

export interface Timings {
  longestRequestSeconds: number;
  deregistrationDelaySeconds: number;
  drainDelayMs: number;
  drainTimeoutMs: number;
  stopTimeoutSeconds: number;
  /** The server's variables that these timings rely on, set in the task. */
  environment: Record<string, string>;
}

/** Seconds between the server's own exit deadline and Docker's SIGKILL. */
const STOP_MARGIN_SECONDS = 3;

export function stopTimings(server: typeof settings.server = settings.server): Timings {
  const longestRequestMs = server.queueTimeoutMs + server.s3DeadlineMs + server.pyramidBuildAllowanceMs;
  const drainTimeoutMs = server.drainDelayMs + longestRequestMs;
  return {
    longestRequestSeconds: Math.ceil(longestRequestMs / 1000),
    deregistrationDelaySeconds: Math.ceil(longestRequestMs / 1000),
    drainDelayMs: server.drainDelayMs,
    drainTimeoutMs,
    stopTimeoutSeconds: Math.ceil(drainTimeoutMs / 1000) + STOP_MARGIN_SECONDS,
    environment: {
      IIIF_QUEUE_TIMEOUT_MS: String(server.queueTimeoutMs),
      IIIF_S3_DEADLINE_MS: String(server.s3DeadlineMs),
      IIIF_DRAIN_DELAY_MS: String(server.drainDelayMs),
      IIIF_DRAIN_TIMEOUT_MS: String(drainTimeoutMs),
    },
  };
}
