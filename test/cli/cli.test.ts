import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeFixtures } from '../fixtures.js';
import { CLI, cli } from './run-cli.js';

let root: string;
beforeAll(async () => {
  ({ root } = await makeFixtures());
});

describe('iiif-elastic help', () => {
  it('lists the commands', async () => {
    const result = await cli('--help');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^Usage: iiif-elastic <command>/);
    expect(result.stdout).toMatch(/^ {2}serve +run the IIIF server/m);
    expect(result.stdout).toMatch(/^ {2}info +print the info\.json/m);
  });

  it.each(['serve', 'info'])('%s --help shows a flag for every setting, named after its variable', async (command) => {
    const result = await cli(command, '--help');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(new RegExp(`^Usage: iiif-elastic ${command} `));
    for (const [flag, variable] of [['port', 'PORT'], ['file-root', 'IIIF_FILE_ROOT'], ['base-url', 'IIIF_BASE_URL'], ['metrics-port', 'IIIF_METRICS_PORT']]) {
      expect(result.stdout).toMatch(new RegExp(`--${flag} <value> +sets ${variable}$`, 'm'));
    }
  });
});

describe('iiif-elastic info', () => {
  it('prints the Image API 3 info.json without a server', async () => {
    const result = await cli('info', 'quadrants.png', '--file-root', root);
    expect(result).toMatchObject({ code: 0, stderr: '' });
    const info = JSON.parse(result.stdout);
    expect(info).toMatchObject({ id: 'http://localhost:3000/iiif/3/quadrants.png', type: 'ImageService3', width: 400, height: 200 });
  });

  it('honours --api 2, --base-url and --tile-size, and encodes the identifier in the id', async () => {
    const result = await cli('info', 'deep/dir/chart.png', '--api', '2', '--base-url', 'https://images.example.org/', '--tile-size', '128', '--file-root', root);
    expect(result.code).toBe(0);
    const info = JSON.parse(result.stdout);
    expect(info['@id']).toBe('https://images.example.org/iiif/2/deep%2Fdir%2Fchart.png');
    expect(info.tiles[0].width).toBe(128);
    expect(info.width).toBe(400);
  });

  it('reads the levels of a pyramidal TIFF', async () => {
    const info = JSON.parse((await cli('info', 'pyramid.tif', '--file-root', root)).stdout);
    expect(info.tiles[0].scaleFactors).toEqual([1, 2, 4, 8]);
  });

  it.each([
    [['info', 'missing.png', '--file-root', ''], 1, /^iiif-elastic: no image with identifier "missing.png"$/],
    [['info', '../outside/secret.png', '--file-root', ''], 1, /^iiif-elastic: no image with identifier/],
    [['info', 'corrupt.jpg', '--file-root', ''], 1, /^iiif-elastic: the stored image cannot be read: /],
    [['info', 'bomb.png', '--file-root', ''], 1, /^iiif-elastic: the stored image is 60000×60000 pixels/],
    [['info', 'quadrants.png', '--file-root', 'MISSING'], 1, /^iiif-elastic: IIIF_FILE_ROOT ".*missing-folder" does not exist$/],
    [['info', 'quadrants.png', '--tile-size', '7', '--file-root', ''], 1, /^iiif-elastic: invalid configuration: IIIF_TILE_SIZE must be/],
    [['info', 'quadrants.png', '--api', '4', '--file-root', ''], 2, /^iiif-elastic: --api must be 2 or 3, got "4"$/],
    [['info', '--file-root', ''], 2, /^iiif-elastic: info takes <identifier>, got 0 argument/],
    [['info', 'a', 'b', '--file-root', ''], 2, /^iiif-elastic: info takes <identifier>, got 2 argument/],
    [['info', 'quadrants.png', '--colour', 'red'], 2, /^iiif-elastic: info: Unknown option '--colour'/],
    [['paint'], 2, /^iiif-elastic: unknown command "paint"/],
    [[], 2, /^iiif-elastic: no command given/],
  ])('%j exits %i with one line', async (args, code, message) => {
    // '' stands for the fixture folder, MISSING for a folder that does not exist in it.
    const resolved = args.map((arg) => (arg === '' ? root : arg === 'MISSING' ? join(root, 'missing-folder') : arg));
    const result = await cli(...resolved);
    expect(result.code).toBe(code);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(/^[^\n]+\n$/);
    expect(result.stderr.trimEnd()).toMatch(message);
  });

  it('writes nothing into the image folder', async () => {
    const before = await readdir(root, { recursive: true });
    await cli('info', 'pyramid.tif', '--file-root', root);
    await cli('info', 'corrupt.jpg', '--file-root', root);
    expect(await readdir(root, { recursive: true })).toEqual(before);
  });
});

describe('iiif-elastic serve', () => {
  let child: ChildProcess;
  let ports: { port: number; metricsPort: number };

  beforeAll(async () => {
    child = spawn(process.execPath, [CLI, 'serve', '--port', '0', '--host', '127.0.0.1', '--file-root', root, '--metrics-port', '0', '--log-level', 'info'], {
      env: { PATH: process.env.PATH, PORT: '1' }, // the flag wins over the variable
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const lines = createInterface({ input: child.stdout! });
    ports = await new Promise((resolve, reject) => {
      child.once('exit', (code) => reject(new Error(`serve exited with ${code}`)));
      lines.on('line', (line) => {
        const entry = JSON.parse(line) as { port?: number; metricsPort?: number };
        if (typeof entry.port === 'number' && typeof entry.metricsPort === 'number') resolve({ port: entry.port, metricsPort: entry.metricsPort });
      });
    });
  });

  afterAll(async () => {
    child.kill('SIGKILL');
    await once(child, 'exit');
  });

  it('starts the server configured by its flags, metrics on their own port', async () => {
    const info = await fetch(`http://127.0.0.1:${ports.port}/iiif/3/quadrants.png/info.json`);
    expect(info.status).toBe(200);
    expect(((await info.json()) as { width: number }).width).toBe(400);
    expect((await fetch(`http://127.0.0.1:${ports.port}/metrics`)).status).toBe(404);
    const metrics = await fetch(`http://127.0.0.1:${ports.metricsPort}/metrics`);
    expect(await metrics.text()).toMatch(/^http_request_duration_seconds_count\{route="info",method="GET",status_class="2xx"\} 1$/m);
  });

  it('fails with one line on a bad flag value', async () => {
    const result = await cli('serve', '--port', 'eighty', '--file-root', root);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe('iiif-elastic: invalid configuration: PORT must be a whole number from 0 to 65535, got "eighty"\n');
  });
});
