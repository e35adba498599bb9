// Starts one real PostgreSQL for the whole run (embedded in a temporary LEASH_HOME, or DATABASE_URL)
// and a migrated template database that each test file clones.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { loadConfig } from '../../src/config/config.js';
import { openDatabase } from '../../src/db/database.js';
import { destroyEmbedded, ensureEmbedded } from '../../src/db/embedded.js';

declare module 'vitest' {
  export interface ProvidedContext {
    adminUrl: string;
    templateDb: string;
  }
}

export default async function setup(project: TestProject) {
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
  const handle = await openDatabase(loadConfig({}), { url: url.toString(), poolMax: 1 });
  await handle.close();
  project.provide('adminUrl', adminUrl);
  project.provide('templateDb', templateDb);

  return async () => {
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
