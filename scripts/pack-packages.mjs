#!/usr/bin/env node
// Packs every public workspace package (the libraries a user imports and the `multiagents` CLI)
// into tarballs that plain `npm install` takes, until the packages are published:
//
//   pnpm packages:pack [out dir]                       # default: dist/packages
//   cd ~/my-project && npm install <clone>/dist/packages/*.tgz
//
// A package is public when its package.json has no `"private": true`. It builds them first (nx:
// cached, so only what changed), since a tarball ships dist/. `pnpm pack` turns each
// `workspace:*` into the real version and applies `publishConfig` (the exports map without the
// `development` condition, whose src/ is not shipped). Prints one line per tarball; `--json`
// prints `[{ name, version, dir, tarball }]` instead; `--no-build` packs what is built; `--list`
// only prints the public packages' names.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** Workspace folders that hold packages (pnpm-workspace.yaml lists the same). */
const PACKAGE_FOLDERS = ['libs', 'apps'];
/** `pnpm pack` runs at most this many at once (the machines have 2 cores). */
const CONCURRENCY = 3;

/** Every public workspace package: `{ name, version, dir }`, sorted by name. */
export function publicPackages(root = ROOT) {
  const found = [];
  for (const folder of PACKAGE_FOLDERS) {
    for (const entry of readdirSync(join(root, folder), { withFileTypes: true })) {
      const file = join(root, folder, entry.name, 'package.json');
      if (!entry.isDirectory() || !existsSync(file)) continue;
      const manifest = JSON.parse(readFileSync(file, 'utf8'));
      if (manifest.private === true) continue;
      found.push({ name: manifest.name, version: manifest.version, dir: join(root, folder, entry.name) });
    }
  }
  return found.sort((a, b) => a.name.localeCompare(b.name));
}

/** The tarball name `pnpm pack` gives a package: `@scope/name@1.0.0` → `scope-name-1.0.0.tgz`. */
export function tarballName({ name, version }) {
  return `${name.replace(/^@/, '').replace('/', '-')}-${version}.tgz`;
}

/** Builds `projects` (Nx project names) and what they depend on; throws with nx's output on failure. */
export async function buildProjects(projects) {
  try {
    await run(
      'pnpm',
      ['exec', 'nx', 'run-many', '-t', 'build', '--projects', projects.join(','), '--output-style=static'],
      {
        cwd: ROOT,
        env: { ...process.env, NX_DAEMON: 'false', NX_TUI: 'false' },
        maxBuffer: 64 * 1024 * 1024,
      },
    );
  } catch (err) {
    throw new Error(`building ${projects.join(', ')} failed:\n${err.stdout ?? ''}${err.stderr ?? ''}`);
  }
}

/**
 * Packs every public package into `outDir` (emptied of old tarballs first), after building them
 * unless `build` is false.
 */
export async function packPackages(outDir, { build = true } = {}) {
  const packages = publicPackages();
  if (build) await buildProjects(packages.map((p) => p.name));
  mkdirSync(outDir, { recursive: true });
  for (const file of readdirSync(outDir)) if (file.endsWith('.tgz')) rmSync(join(outDir, file));
  const missing = packages.filter((p) => !existsSync(join(p.dir, 'dist')));
  if (missing.length > 0) {
    throw new Error(`not built (run pnpm build first): ${missing.map((p) => p.name).join(', ')}`);
  }
  const queue = [...packages];
  const packOne = async () => {
    for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
      await run('pnpm', ['pack', '--pack-destination', outDir], { cwd: next.dir });
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, packOne));
  return packages.map((p) => ({ ...p, tarball: join(outDir, tarballName(p)) }));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  if (args.includes('--list')) {
    for (const p of publicPackages()) process.stdout.write(`${p.name}\n`);
    process.exit(0);
  }
  const json = args.includes('--json');
  const outDir = resolve(args.find((a) => !a.startsWith('--')) ?? join(ROOT, 'dist', 'packages'));
  packPackages(outDir, { build: !args.includes('--no-build') }).then(
    (packed) => {
      if (json) process.stdout.write(`${JSON.stringify(packed)}\n`);
      else for (const p of packed) process.stdout.write(`${p.tarball}\n`);
    },
    (err) => {
      process.stderr.write(`pack-packages: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
