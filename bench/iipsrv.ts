import { spawn } from 'node:child_process';
import { access, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RunningServer } from './server-process.js';

export const LIGHTTPD = '/usr/sbin/lighttpd';
export const IIPSRV = '/usr/lib/iipimage-server/iipsrv.fcgi';

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/**
 * iipsrv as its users run it: Debian's iipimage-server under lighttpd's mod_fastcgi, one
 * FastCGI process per core (iipsrv is single-threaded), IIIF 2 at /iiif/{identifier}/….
 * Fails loudly when the packages are missing (npm run bench:compare installs them).
 */
/** iipsrv's FastCGI endpoint without arguments: a 400 help page, no image opened (it has no health route). */
export const IIPSRV_PROBE = '/fcgi-bin/iipsrv.fcgi';

export async function startIipsrv(dataDir: string, processes: number, environment: Record<string, string> = {}): Promise<RunningServer> {
  for (const binary of [LIGHTTPD, IIPSRV]) {
    await access(binary).catch(() => {
      throw new Error(`${binary} is missing: apt-get install lighttpd iipimage-server`);
    });
  }
  const dir = await mkdtemp(join(tmpdir(), 'iipsrv-'));
  const port = await freePort();
  const config = `
server.document-root = "${dir}"
server.port = ${port}
server.bind = "127.0.0.1"
server.modules = ("mod_rewrite", "mod_fastcgi")
server.errorlog = "${dir}/error.log"
server.max-connections = 2048
url.rewrite-once = ( "^/iiif/(.*)$" => "/fcgi-bin/iipsrv.fcgi?IIIF=$1" )
fastcgi.server = ( "/fcgi-bin/iipsrv.fcgi" => ((
  "bin-path" => "${IIPSRV}",
  "socket" => "${dir}/iipsrv.sock",
  "check-local" => "disable",
  "min-procs" => ${processes},
  "max-procs" => ${processes},
  "bin-environment" => ( "FILESYSTEM_PREFIX" => "${dataDir}/", "LOGFILE" => "${dir}/iipsrv.log", "VERBOSITY" => "0",
                         "MAX_IMAGE_CACHE_SIZE" => "64", "JPEG_QUALITY" => "85", "CORS" => "*"${Object.entries(environment)
                           .map(([name, value]) => `, "${name}" => "${value}"`)
                           .join('')} )
)))
`;
  await writeFile(join(dir, 'lighttpd.conf'), config);
  const child = spawn(LIGHTTPD, ['-D', '-f', join(dir, 'lighttpd.conf')], { stdio: 'inherit' });
  const url = `http://127.0.0.1:${port}`;
  for (let attempt = 0; ; attempt++) {
    const ready = await fetch(`${url}/iiif/`).then(() => true, () => false);
    if (ready) break;
    if (attempt > 100 || child.exitCode !== null) throw new Error('lighttpd with iipsrv did not start');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    url,
    pid: child.pid!,
    stop: async () => {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await new Promise((resolve) => child.once('exit', resolve));
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
