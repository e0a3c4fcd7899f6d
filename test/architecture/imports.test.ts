import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { projectRoot } from '../../src/paths.js';

const SRC = join(projectRoot(), 'src');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? sourceFiles(join(dir, entry.name)) : entry.name.endsWith('.ts') ? [join(dir, entry.name)] : [],
  );
}

interface Imports {
  /** Project files this one imports at run time (type-only imports left out: they vanish when compiled). */
  local: string[];
  /** Every module specifier, type-only or not. */
  all: string[];
}

function importsOf(file: string): Imports {
  const text = readFileSync(file, 'utf8');
  const local: string[] = [];
  const all: string[] = [];
  for (const match of text.matchAll(/^\s*(import|export)\s+(type\s+)?[^'"]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/gm)) {
    const specifier = match[3] ?? match[4]!;
    all.push(specifier);
    if (specifier.startsWith('.') && !match[2]) local.push(resolve(dirname(file), specifier.replace(/\.js$/, '.ts')));
  }
  return { local, all };
}

const graph = new Map(sourceFiles(SRC).map((file) => [file, importsOf(file)]));
const name = (file: string) => relative(SRC, file);

describe('the shape of src/', () => {
  it('has no import cycle', () => {
    const cycles: string[] = [];
    const state = new Map<string, 'open' | 'done'>();
    const visit = (file: string, path: string[]) => {
      if (state.get(file) === 'done') return;
      if (state.get(file) === 'open') {
        cycles.push([...path.slice(path.indexOf(file)), file].map(name).join(' → '));
        return;
      }
      state.set(file, 'open');
      for (const next of graph.get(file)?.local ?? []) visit(next, [...path, file]);
      state.set(file, 'done');
    };
    for (const file of graph.keys()) visit(file, []);
    expect(cycles).toEqual([]);
  });

  it('imports nothing from bench/, scripts/ or test/ (the shipped package has none of them)', () => {
    const outside = [...graph].flatMap(([file, { all }]) =>
      all.filter((specifier) => specifier.startsWith('.') && !resolve(dirname(file), specifier).startsWith(SRC)).map((specifier) => `${name(file)}: ${specifier}`),
    );
    expect(outside).toEqual([]);
  });

  it('keeps the IIIF protocol free of I/O: no file system, decoder, network or HTTP framework in src/iiif', () => {
    const io = /^(node:(fs|fs\/promises|net|http|https|child_process)|sharp|fastify|@aws-sdk\/.*)$/;
    const found = [...graph]
      .filter(([file]) => name(file).startsWith('iiif/'))
      .flatMap(([file, { all }]) => all.filter((specifier) => io.test(specifier)).map((specifier) => `${name(file)}: ${specifier}`));
    expect(found).toEqual([]);
  });
});
