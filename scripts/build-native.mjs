// Builds the optional native addons with node-gyp: the JPEG 2000 decoder (native/openjp2, on
// Debian's libopenjp2) and the JPEG tile renderer (native/jpegtiles, on Debian's libjpeg-turbo).
// Run by `npm ci`/`npm install` (the package's install script): an addon whose headers are
// missing, or that does not compile, is named in one line and skipped, so the two README
// commands work on any machine and the server runs without it (JPEG 2000 answers 501 and says
// how to enable it; tiles are rendered through sharp instead). `--required` (npm run
// build:native) fails for any addon it cannot build instead, for the Docker build stage and
// scripts/system/*.sh. Addon names as arguments build only those.
import { spawnSync } from 'node:child_process';
import console from 'node:console';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';

/** Each addon: its folder under native/, the header that says its library is installed, and what is lost without it. */
const ADDONS = [
  {
    name: 'openjp2',
    header: '/usr/include/openjpeg-2.5/openjpeg.h',
    package: 'libopenjp2-7-dev',
    without: 'JPEG 2000 stays unavailable',
    built: 'native JPEG 2000 decoder built',
  },
  {
    name: 'jpegtiles',
    header: '/usr/include/jpeglib.h',
    package: 'libjpeg62-turbo-dev',
    without: 'tiles across stored JPEG tiles are rendered through sharp',
    built: 'native JPEG tile renderer built',
  },
];

const required = process.argv.includes('--required');
const named = process.argv.slice(2).filter((argument) => !argument.startsWith('--'));
const unknown = named.filter((name) => !ADDONS.some((addon) => addon.name === name));
if (unknown.length > 0) {
  console.error(`build-native: no addon called ${unknown.join(', ')} (${ADDONS.map((addon) => addon.name).join(', ')})`);
  process.exit(1);
}
const nativeDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'native');

// npm hands its bundled node-gyp to the scripts it runs; a global node-gyp is the fallback.
const nodeGyp = process.env.npm_config_node_gyp;
const command = nodeGyp ? [process.execPath, nodeGyp] : ['node-gyp'];
// Node's own headers when they are installed next to it (Debian, NodeSource and the official
// images all ship them), so the build needs no download.
const prefix = dirname(dirname(process.execPath));
const nodedir = existsSync(join(prefix, 'include', 'node', 'node_api.h')) ? [`--nodedir=${prefix}`] : [];

/** Builds one addon; the reason it could not, or undefined. */
function build(addon) {
  if (!existsSync(addon.header)) return `${addon.header} not found`;
  const run = spawnSync(command[0], [...command.slice(1), 'rebuild', ...nodedir], { cwd: join(nativeDir, addon.name), stdio: 'inherit' });
  if (run.error) return `node-gyp could not start (${run.error.message})`;
  if (run.status !== 0) return 'the native build failed (see above)';
  return undefined;
}

let failed = false;
for (const addon of ADDONS.filter(({ name }) => named.length === 0 || named.includes(name))) {
  const reason = build(addon);
  if (!reason) console.log(`${addon.name}: ${addon.built}`);
  else if (required) {
    console.error(`${addon.name}: ${reason}`);
    failed = true;
  } else {
    console.log(`${addon.name}: ${reason}; ${addon.without} (apt-get install ${addon.package} python3 make g++, then npm run build:native)`);
  }
}
process.exit(failed ? 1 : 0);
