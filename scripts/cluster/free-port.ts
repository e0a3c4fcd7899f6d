import { createServer } from 'node:net';

/** A TCP port on 127.0.0.1 that was free a moment ago, for programs that cannot take port 0. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (typeof address !== 'object' || !address) throw new Error('could not read the port of a probe socket');
  return address.port;
}
