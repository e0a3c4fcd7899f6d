// Builds the optional native JPEG 2000 decoder (native/openjp2, on Debian's libopenjp2) with
// node-gyp. Run by `npm ci`/`npm install` (the package's install script): without the OpenJPEG
// headers, or when the compiler is missing, it says so in one line and succeeds, so the two
// README commands work on any machine and the server runs without JPEG 2000 (it answers those
// images with 501 and says how to enable them). `--required` (npm run build:native) fails
// instead, for the Docker build stage and scripts/system/openjpeg.sh.
import { spawnSync } from 'node:child_process';
import console from 'node:console';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';

const HEADER = '/usr/include/openjpeg-2.5/openjpeg.h';
const HOW = 'apt-get install libopenjp2-7-dev python3 make g++, then npm run build:native';
const required = process.argv.includes('--required');
const addonDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'native', 'openjp2');

function giveUp(reason) {
  if (required) {
    console.error(`openjp2: ${reason}`);
    process.exit(1);
  }
  console.log(`openjp2: ${reason}; JPEG 2000 stays unavailable (${HOW})`);
  process.exit(0);
}

if (!existsSync(HEADER)) giveUp(`${HEADER} not found`);

// npm hands its bundled node-gyp to the scripts it runs; a global node-gyp is the fallback.
const nodeGyp = process.env.npm_config_node_gyp;
const command = nodeGyp ? [process.execPath, nodeGyp] : ['node-gyp'];
// Node's own headers when they are installed next to it (Debian, NodeSource and the official
// images all ship them), so the build needs no download.
const prefix = dirname(dirname(process.execPath));
const nodedir = existsSync(join(prefix, 'include', 'node', 'node_api.h')) ? [`--nodedir=${prefix}`] : [];
const run = spawnSync(command[0], [...command.slice(1), 'rebuild', ...nodedir], { cwd: addonDir, stdio: 'inherit' });
if (run.error) giveUp(`node-gyp could not start (${run.error.message})`);
if (run.status !== 0) giveUp('the native build failed (see above)');
console.log('openjp2: native JPEG 2000 decoder built');
