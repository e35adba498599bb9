// Starts one real PostgreSQL for the whole run (embedded in a temporary LEASH_HOME, or DATABASE_URL)
// and a migrated template database that each test file clones; at the end removes all of it, whatever failed.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { openDatabase } from '../../src/db/database.js';
import { destroyEmbedded, embeddedStatus, ensureEmbedded } from '../../src/db/embedded.js';
import { sharedDirOf } from '../../src/db/embedded-place.js';
import { waitForExit } from '../../src/db/postmaster.js';
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

const run = promisify(execFile);

/** Databases dropped at once at the end of a run on a server the run did not start (DATABASE_URL). */
const DROPS_AT_ONCE = 4;

/** Drops every database a run leaves on a server it did not start, a few at a time; failures are said, not thrown. */
async function dropAll(adminUrl: string, names: string[]): Promise<void> {
  const queue = [...names];
  const dropper = async () => {
    const admin = new pg.Client({ connectionString: adminUrl });
    await admin.connect();
    try {
      for (let name = queue.shift(); name !== undefined; name = queue.shift()) {
        await admin
          .query(`drop database if exists "${name.replaceAll('"', '""')}" with (force)`)
          .catch((error: unknown) => {
            process.exitCode = 1;
            console.error(`could not drop the test database ${name}: ${String(error)}`);
          });
      }
    } finally {
      await admin.end();
    }
  };
  await Promise.all(Array.from({ length: Math.min(DROPS_AT_ONCE, names.length) }, dropper));
}

/**
 * Ends the run's own cluster at once (immediate shutdown: no checkpoint writing out what is about to be deleted)
 * and deletes it, every database in it with it.
 */
async function destroyRunCluster(home: string): Promise<void> {
  const { pid, inHome, dataDir } = await embeddedStatus(home);
  if (pid) {
    try {
      process.kill(pid, 'SIGQUIT');
    } catch {
      // already gone
    }
    // A generous bound for a loaded machine; destroyEmbedded stops it the usual way should it still run.
    await waitForExit(pid, 60_000);
  }
  // The files first, by rm(1) (about a gigabyte after a whole run: destroyEmbedded would add up their sizes file by
  // file, then unlink them from JavaScript, each taking seconds on a busy machine) ...
  const files = inHome ? dataDir : sharedDirOf(home);
  await run('rm', ['-rf', '--', files]).catch(() => rm(files, { recursive: true, force: true }));
  // ... then whatever else destroyEmbedded knows of (the server's record), and the home.
  await destroyEmbedded(home);
  await rm(home, { recursive: true, force: true });
}

export default async function setup(project: TestProject) {
  const homes = await runHomes();
  // Found (or unpacked, a few seconds) while the database starts.
  const chromium = findChromium();
  let home: string | undefined;
  let admin: pg.Client | undefined;
  let adminUrl = process.env.DATABASE_URL;
  const templateDb = `leash_tpl_${process.pid}`;
  try {
    if (!adminUrl) {
      // Among the run's other homes: a run killed before its teardown leaves this cluster to the next run's sweep.
      home = await mkdtemp(join(homes.dir, 'leash-test-'));
      // The superuser: cloning a template database needs more than leash's own (owner) role may do.
      adminUrl = (await ensureEmbedded(home)).adminUrl;
    }
    admin = new pg.Client({ connectionString: adminUrl });
    await admin.connect();
    await admin.query(`drop database if exists ${templateDb}`);
    await admin.query(`create database ${templateDb}`);
    const url = new URL(adminUrl);
    url.pathname = `/${templateDb}`;
    const handle = await openDatabase(catalogConfig({}), { url: url.toString(), poolMax: 1 });
    await handle.close();
    project.provide('adminUrl', adminUrl);
    project.provide('templateDb', templateDb);
    project.provide('chromium', await chromium);
  } catch (error) {
    // No teardown follows a failed set-up: what it made goes now.
    await admin?.end().catch(() => undefined);
    if (home) await destroyRunCluster(home).catch(() => undefined);
    await homes.finish();
    throw error;
  }
  // Every temporary home the test files make (tmpdir()) lands in one directory, checked for clusters at the end.
  process.env.TMPDIR = homes.dir;
  const connected = admin;
  const serverUrl = adminUrl;

  return async () => {
    try {
      if (home) {
        await connected.end();
        // The whole cluster goes, its databases with it: nothing to drop one by one.
        await destroyRunCluster(home);
      } else {
        const leftovers = await connected.query<{ datname: string }>(
          `select datname from pg_database where datname like 'leash_t_%' or datname = $1`,
          [templateDb],
        );
        await connected.end();
        await dropAll(
          serverUrl,
          leftovers.rows.map((r) => r.datname),
        );
      }
    } finally {
      // Then any cluster a test file left in the run's directory (this run's own is gone by now).
      await homes.finish();
    }
  };
}
