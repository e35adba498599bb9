import { openDatabase, redactUrl, resolveDatabaseUrl } from '../db/database.js';
import { embeddedStatus, ensureEmbedded, stopEmbedded } from '../db/embedded.js';
import { findOrphans, sharedClusters } from '../db/embedded-orphans.js';
import { migrateToLatest } from '../db/migrate.js';
import { CliError, EXIT, command, type CommandGroup } from './command.js';
import { describeOrphan, destroy, formatBytes } from './db-destroy.js';
import { snakeKeys } from './output.js';

const json = { json: { type: 'boolean' } } as const;

const start = command({
  name: 'start',
  summary: 'Start the embedded PostgreSQL for LEASH_HOME (or reuse the running one), then migrate.',
  usage: 'db start [--json]',
  help: ['--json      print the server as JSON'],
  options: json,
  async run(ctx, values) {
    const config = ctx.config();
    if (config.databaseUrl)
      throw new CliError('DATABASE_URL is set; leash uses that server and does not start its own');
    const server = await ensureEmbedded(config.home);
    const handle = await openDatabase(config, { url: server.url, migrate: false, poolMax: 1 });
    const applied = await migrateToLatest(handle.db).finally(() => handle.close());
    const status = await embeddedStatus(config.home);
    if (values.json)
      ctx.json({
        ...snakeKeys(status),
        url: status.url ? redactUrl(status.url) : undefined,
        migrations_applied: applied,
      });
    else
      ctx.print(
        `PostgreSQL ${status.version ?? ''} running on 127.0.0.1:${server.port} (data: ${server.dataDir})`,
      );
  },
});

const stop = command({
  name: 'stop',
  summary: 'Stop the embedded PostgreSQL for LEASH_HOME.',
  usage: 'db stop [--json]',
  help: ['--json      print the result as JSON'],
  options: json,
  async run(ctx, values) {
    const config = ctx.config();
    if (config.databaseUrl) throw new CliError('DATABASE_URL is set; leash does not manage that server');
    const stopped = await stopEmbedded(config.home);
    if (values.json) ctx.json({ stopped });
    else ctx.print(stopped ? 'PostgreSQL stopped' : 'PostgreSQL was not running');
  },
});

const status = command({
  name: 'status',
  summary:
    'Say whether the database is running, where it lives and how to reach it, and list clusters whose LEASH_HOME is gone.',
  usage: 'db status [--json]',
  help: ['--json      print the status as JSON'],
  options: json,
  async run(ctx, values) {
    const config = ctx.config();
    if (config.databaseUrl) {
      let running = true;
      let reason: string | undefined;
      try {
        const handle = await openDatabase(config, { migrate: false, poolMax: 1 });
        await handle.pool.query('select 1').finally(() => handle.close());
      } catch (error) {
        running = false;
        reason = (error as { code?: string }).code ?? 'unreachable';
      }
      const data = {
        mode: 'external',
        running,
        url: redactUrl(config.databaseUrl),
        ...(reason ? { reason } : {}),
      };
      if (values.json) ctx.json(data);
      else
        ctx.print(
          `external database ${data.url}: ${running ? 'reachable' : `unreachable (${reason ?? ''})`}`,
        );
      return running ? EXIT.ok : EXIT.unavailable;
    }
    const s = await embeddedStatus(config.home);
    const orphans = await findOrphans();
    // Made by a leash before clusters had markers: their home is unknown, so they are never called orphans.
    const unmarked = (await sharedClusters()).filter((c) => !c.home).map((c) => c.dir);
    if (values.json)
      ctx.json({
        mode: 'embedded',
        ...snakeKeys(s),
        url: s.url ? redactUrl(s.url) : undefined,
        orphans: orphans.map((o) => snakeKeys(o)),
        unmarked,
      });
    else {
      const bytes = orphans.reduce((sum, o) => sum + o.bytes, 0);
      const state = s.running
        ? `running (pid ${s.pid ?? '?'}, port ${s.port ?? '?'}, ${s.version ?? ''})`
        : s.initialised
          ? 'stopped; `leash db start` starts it'
          : 'not initialised; run `leash init` to set up LEASH_HOME and its database';
      ctx.print(
        [
          `embedded PostgreSQL: ${state}`,
          `LEASH_HOME: ${s.home}`,
          `data directory: ${s.dataDir}`,
          ...(s.osUser ? [`  runs as OS user '${s.osUser}'`] : []),
          ...(s.note ? [`  outside LEASH_HOME: ${s.note}`] : []),
          ...(orphans.length
            ? [
                `clusters whose LEASH_HOME is gone: ${orphans.length} (${formatBytes(bytes)})`,
                ...orphans.map((o) => `  ${describeOrphan(o)}`),
                '  delete them with `leash db destroy --orphans`',
              ]
            : []),
          ...(unmarked.length
            ? [
                `clusters an earlier leash left without a marker: ${unmarked.length}`,
                "  (home unknown; each gets a marker when its home's leash starts it)",
                ...unmarked.map((d) => `  ${d}`),
              ]
            : []),
        ].join('\n'),
      );
    }
    return s.running ? EXIT.ok : EXIT.unavailable;
  },
});

const migrate = command({
  name: 'migrate',
  summary: 'Apply pending schema migrations (idempotent).',
  usage: 'db migrate [--json]',
  help: ['--json      print applied migrations as JSON'],
  options: json,
  async run(ctx, values) {
    const handle = await openDatabase(ctx.config(), { migrate: false, poolMax: 1 });
    const applied = await migrateToLatest(handle.db).finally(() => handle.close());
    if (values.json) ctx.json({ applied });
    else ctx.print(applied.length ? `applied: ${applied.join(', ')}` : 'schema is up to date');
  },
});

const url = command({
  name: 'url',
  summary: 'Print the connection URL (for psql). Starts the embedded server if needed.',
  usage: 'db url [--json]',
  help: ['--json      print {"url": …} as JSON'],
  options: json,
  async run(ctx, values) {
    const u = await resolveDatabaseUrl(ctx.config());
    if (values.json) ctx.json({ url: u });
    else ctx.print(u);
  },
});

export const dbCommands: CommandGroup = {
  name: 'db',
  commands: [start, stop, status, migrate, url, destroy],
};
