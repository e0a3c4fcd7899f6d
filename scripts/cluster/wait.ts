/**
 * Polls `check` every `intervalMs` until it returns true; rejects naming `what` once
 * `deadlineMs` has passed. Errors thrown by `check` end the wait at once.
 */
export async function waitUntil(what: string, deadlineMs: number, check: () => Promise<boolean>, intervalMs = 100): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${deadlineMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** True when the server on 127.0.0.1:port answers /health with 200. */
export async function healthy(port: number): Promise<boolean> {
  // A referenced timer, unlike AbortSignal.timeout's: while a container's port is published but
  // its server not yet up, fetch can hold nothing that keeps a script's event loop alive.
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), 1_000);
  try {
    const response = await fetch(`http://127.0.0.1:${port}/health`, { signal: controller.signal });
    await response.arrayBuffer();
    return response.ok;
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}
