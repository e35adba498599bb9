// Global set-up of a `postgres-<major>` test project: starts the system's PostgreSQL of that major in a temporary
// directory and a migrated template database, so that project's test files run unchanged against it.
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { openDatabase } from '../../src/db/database.js';
import { catalogConfig } from './config.js';
import { startSystemPostgres } from './system-postgres.js';

export default async function setup(project: TestProject) {
  const major = Number(/^postgres-(\d+)$/.exec(project.name)?.[1]);
  if (!Number.isInteger(major)) throw new Error(`project ${project.name} is not named postgres-<major>`);
  const server = await startSystemPostgres(major);
  try {
    const templateDb = `leash_tpl_${process.pid}`;
    const admin = new pg.Client({ connectionString: server.adminUrl });
    await admin.connect();
    try {
      const { rows } = await admin.query<{ v: string }>(`select current_setting('server_version') as v`);
      console.log(`[${project.name}] PostgreSQL ${rows[0]?.v ?? '?'} from the system's binaries`);
      await admin.query(`create database ${templateDb}`);
    } finally {
      await admin.end();
    }
    const url = new URL(server.adminUrl);
    url.pathname = `/${templateDb}`;
    // Every migration applies on this version, or the whole project fails here, saying which.
    await (await openDatabase(catalogConfig({}), { url: url.toString(), poolMax: 1 })).close();
    project.provide('adminUrl', server.adminUrl);
    project.provide('templateDb', templateDb);
    project.provide('chromium', { error: `the ${project.name} project runs no browser tests` });
  } catch (error) {
    await server.stop();
    throw error;
  }
  // The whole cluster goes with its directory: no database needs dropping first.
  return () => server.stop();
}
