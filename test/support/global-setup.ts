// Starts one real PostgreSQL for the whole run (embedded in a temporary LEASH_HOME, or DATABASE_URL)
// and a migrated template database that each test file clones.
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { openDatabase } from '../../src/db/database.js';
import { destroyEmbedded, ensureEmbedded } from '../../src/db/embedded.js';
import { catalogConfig } from './config.js';
import { runHomes } from './leftovers.js';

declare module 'vitest' {
  export interface ProvidedContext {
    adminUrl: string;
    templateDb: string;
    /** The console tests' browser (found or unpacked below): its path and the extra flags it needs. */
    chromium: { path: string; args: string[] } | { error: string };
  }
}

/**
 * The console tests' browser: CHROMIUM_PATH, else the system Chromium, else the one @sparticuz/chromium ships
 * (unpacked here once, so test files running side by side never unpack it at the same time).
 */
async function findChromium(): Promise<{ path: string; args: string[] } | { error: string }> {
  const given = process.env.CHROMIUM_PATH;
  if (given)
    return existsSync(given) ? { path: given, args: [] } : { error: `CHROMIUM_PATH=${given} does not exist` };
  if (existsSync('/usr/bin/chromium')) return { path: '/usr/bin/chromium', args: [] };
  try {
    const { default: packaged } = await import('@sparticuz/chromium');
    // Not its launch flags: they are for serverless hosts (single process, web security off), and the console's tests
    // check the browser's security rules. The binary runs with the usual headless flags (browser.ts).
    return { path: await packaged.executablePath(), args: [] };
  } catch (error) {
    return {
      error: `no CHROMIUM_PATH, no /usr/bin/chromium, and @sparticuz/chromium could not unpack its browser (${
        error instanceof Error ? error.message : String(error)
      })`,
    };
  }
}

export default async function setup(project: TestProject) {
  const homes = await runHomes();
  let home: string | undefined;
  let adminUrl = process.env.DATABASE_URL;
  if (!adminUrl) {
    home = await mkdtemp(join(tmpdir(), 'leash-test-'));
    // The superuser: cloning a template database needs more than leash's own (owner) role may do.
    adminUrl = (await ensureEmbedded(home)).adminUrl;
  }
  const templateDb = `leash_tpl_${process.pid}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`drop database if exists ${templateDb}`);
  await admin.query(`create database ${templateDb}`);
  const url = new URL(adminUrl);
  url.pathname = `/${templateDb}`;
  const handle = await openDatabase(catalogConfig({}), { url: url.toString(), poolMax: 1 });
  await handle.close();
  project.provide('adminUrl', adminUrl);
  project.provide('templateDb', templateDb);
  project.provide('chromium', await findChromium());
  // Every temporary home the test files make (tmpdir()) lands in one directory, checked for clusters at the end.
  process.env.TMPDIR = homes.dir;

  return async () => {
    await homes.finish();
    const leftovers = await admin.query<{ datname: string }>(
      `select datname from pg_database where datname like 'leash_t_%' or datname = $1`,
      [templateDb],
    );
    for (const { datname } of leftovers.rows) {
      await admin.query(`drop database if exists ${datname} with (force)`).catch(() => undefined);
    }
    await admin.end();
    if (home) {
      await destroyEmbedded(home);
      await rm(home, { recursive: true, force: true });
    }
  };
}
