/**
 * `npm run deploy:render`: deploy/capacity.json + the typed settings → the ECS task and service
 * definitions, the one-off derivatives task and the CloudFormation template. Any input that cannot work ends the process
 * with exit code 1 and one line on stderr.
 *
 *   npm run deploy:render [-- --capacity FILE --out DIR]
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { projectRoot } from '../../src/paths.js';
import { readCapacity } from './capacity.js';
import { DERIVATIVE_PLACEHOLDERS, derivativesTaskDefinition, PLACEHOLDERS, serviceCliInput, taskDefinition } from './ecs.js';
import { deriveSizing } from './sizing.js';
import { synthesizeTemplate } from './stack.js';

/** The files a render writes, relative to its output folder. */
export const ARTIFACTS = {
  taskDefinition: 'ecs/task-definition.json',
  service: 'ecs/service.json',
  derivativesTask: 'ecs/derivatives-task-definition.json',
  template: 'cloudformation/iiif-elastic.template.json',
} as const;

export const deployDir = (): string => join(projectRoot(), 'deploy');

const json = (value: unknown) => `${JSON.stringify(value, null, 2)}\n`;

/** Renders every artifact from a capacity file into `outDir`; returns the written paths. */
export async function render(capacityPath: string, outDir: string): Promise<string[]> {
  const capacity = await readCapacity(capacityPath);
  const sizing = deriveSizing(capacity);
  const contents: Record<keyof typeof ARTIFACTS, string> = {
    taskDefinition: json(taskDefinition(PLACEHOLDERS, sizing)),
    service: json(serviceCliInput(PLACEHOLDERS)),
    derivativesTask: json(derivativesTaskDefinition(PLACEHOLDERS, DERIVATIVE_PLACEHOLDERS, sizing)),
    template: json(await synthesizeTemplate(sizing, capacity)),
  };
  const written: string[] = [];
  for (const [key, relative] of Object.entries(ARTIFACTS) as Array<[keyof typeof ARTIFACTS, string]>) {
    const path = join(outDir, relative);
    await mkdir(join(path, '..'), { recursive: true });
    await writeFile(path, contents[key]);
    written.push(path);
  }
  return written;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { capacity: { type: 'string' }, out: { type: 'string' } } });
  const written = await render(values.capacity ?? join(deployDir(), 'capacity.json'), values.out ?? deployDir());
  for (const path of written) console.log(`wrote ${path}`);
}

if (process.argv[1]?.endsWith('render.js')) {
  main().catch((error: unknown) => {
    process.stderr.write(`deploy:render: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  });
}
