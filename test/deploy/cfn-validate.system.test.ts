/**
 * The rendered template through AWS's offline CloudFormation validator
 * (@aws/cloudformation-validate: every resource provider schema plus its semantic rules,
 * bundled as WebAssembly; nothing is fetched). Errors and warnings fail; INFO findings (tags not
 * set, create-only properties) are advice. Severities: DEBUG, INFO, WARN, ERROR, FATAL.
 */
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RegoEngine, TemplateFile, type Engine } from '@aws/cloudformation-validate';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ARTIFACTS, render } from '../../deploy/src/render.js';
import { capacityFile, measuredCapacity } from './fixtures.js';

let out: string;
let engine: Engine;

// Synthesis and validation are CPU-bound: seconds on an idle machine, minutes on a loaded one.
// Nothing here depends on how long they take, so the limits only catch a hang.
const SLOW_TOOL_MS = 15 * 60_000;

beforeAll(async () => {
  out = await mkdtemp(join(tmpdir(), 'iiif-cfn-'));
  await render(await capacityFile(measuredCapacity()), out);
  engine = new RegoEngine();
}, SLOW_TOOL_MS);

afterAll(() => engine?.free());

function findings(path: string): string[] {
  return engine
    .validateStandard(new TemplateFile(path))
    .diagnostics.filter((d) => d.severity !== 'INFO' && d.severity !== 'DEBUG')
    .map((d) => `${d.severity} ${d.ruleId}: ${d.message}`);
}

describe('CloudFormation validation, offline', () => {
  it('finds no error and no warning in the rendered template', () => {
    expect(findings(join(out, ARTIFACTS.template))).toEqual([]);
  }, SLOW_TOOL_MS);

  it('rejects a broken copy, so the check can fail', async () => {
    const template = JSON.parse(await readFile(join(out, ARTIFACTS.template), 'utf8'));
    template.Resources.TargetGroup.Properties.HealthCheckIntervalSeconds = 500;
    template.Resources.TargetGroup.Properties.Protocol = 'HTTPX';
    template.Resources.Service.Properties.PlacementStrategy = template.Resources.Service.Properties.PlacementStrategies;
    const broken = join(out, 'broken.template.json');
    await writeFile(broken, JSON.stringify(template));
    const report = findings(broken).join('\n');
    expect(report).toMatch(/FATAL F3034: 500 is greater than the maximum of 300/);
    expect(report).toMatch(/WARN W3030: 'HTTPX' is not one of/);
    expect(report).toMatch(/FATAL F3002: Additional properties are not allowed \('PlacementStrategy' was unexpected/);
  }, SLOW_TOOL_MS);
});
