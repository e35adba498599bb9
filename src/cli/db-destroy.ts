// `leash db destroy`: delete LEASH_HOME's embedded cluster, or (--orphans) the clusters whose home is gone.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { destroyEmbedded, embeddedStatus } from '../db/embedded.js';
import { diskUsage, findOrphans, removeOrphan, type Orphan } from '../db/embedded-orphans.js';
import { CliError, EXIT, command, type Context } from './command.js';

/** Bytes for people: `52 MB`. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${unit ? value.toFixed(value < 10 ? 1 : 0) : value} ${units[unit] ?? 'B'}`;
}

/** One line per orphan, as `db status` and the confirmation show it. */
export function describeOrphan(o: Orphan): string {
  const what =
    o.kind === 'home-gone'
      ? `${o.dir} (home ${o.home ?? '?'} is gone, ${formatBytes(o.bytes)}`
      : `${o.dir} (deleted while its server runs`;
  return `${what}${o.pid ? `, running as pid ${o.pid}` : ''})`;
}

/** Yes only from a person who said so: --yes, or an answer at the terminal. Anything else changes nothing. */
async function confirmed(ctx: Context, yes: boolean | undefined, question: string): Promise<void> {
  if (yes) return;
  if (!ctx.io.ask)
    throw new CliError(
      'refusing to delete without --yes: there is no terminal to ask on (stdin or stdout is not one); nothing was changed',
      EXIT.usage,
    );
  const answer = await ctx.io.ask(`${question} [y/N] `);
  if (!/^\s*y(es)?\s*$/i.test(answer)) throw new CliError('not confirmed; nothing was changed');
}

async function destroyHome(ctx: Context, yes: boolean | undefined, json: boolean | undefined) {
  const config = ctx.config();
  if (config.databaseUrl)
    throw new CliError('DATABASE_URL is set; leash does not manage that server and deletes nothing there');
  const s = await embeddedStatus(config.home);
  if (!s.initialised && !existsSync(s.dataDir)) {
    if (json) ctx.json({ destroyed: false, home: config.home });
    else ctx.print(`LEASH_HOME ${config.home} has no embedded database; nothing to delete`);
    return;
  }
  const size = formatBytes(await diskUsage(s.dataDir));
  await confirmed(
    ctx,
    yes,
    `Delete the embedded PostgreSQL of ${config.home}: ${s.dataDir} (${size}) with its audit log, keys and ` +
      `policies${s.pid ? `, stopping its server (pid ${s.pid}) first` : ''}? This cannot be undone.`,
  );
  const done = await destroyEmbedded(config.home);
  if (json)
    ctx.json({ destroyed: done.destroyed, home: config.home, data_dir: s.dataDir, bytes: done.bytes });
  else
    ctx.print(
      `deleted the embedded PostgreSQL of ${config.home} (${s.dataDir}, ${formatBytes(done.bytes)}); ` +
        'the master key and config file stay. `leash init` makes a new, empty one',
    );
}

async function destroyOrphans(
  ctx: Context,
  picked: string[],
  yes: boolean | undefined,
  json: boolean | undefined,
) {
  const all = await findOrphans();
  const wanted = picked.map((p) => resolve(p));
  for (const dir of wanted)
    if (!all.some((o) => o.dir === dir))
      throw new CliError(
        `${dir} is not a cluster whose LEASH_HOME is gone (see \`leash db status\`)`,
        EXIT.notFound,
      );
  const orphans = wanted.length ? all.filter((o) => wanted.includes(o.dir)) : all;
  if (!orphans.length) {
    if (json) ctx.json({ destroyed: [], skipped: [], bytes: 0 });
    else ctx.print('no clusters whose LEASH_HOME is gone; nothing to delete');
    return;
  }
  await confirmed(
    ctx,
    yes,
    `Delete ${orphans.length} cluster(s) whose LEASH_HOME is gone, stopping any that run?\n` +
      orphans.map((o) => `  ${describeOrphan(o)}`).join('\n') +
      '\n',
  );
  const destroyed: Orphan[] = [];
  const skipped: Orphan[] = [];
  for (const o of orphans) ((await removeOrphan(o)) ? destroyed : skipped).push(o);
  const bytes = destroyed.reduce((sum, o) => sum + o.bytes, 0);
  if (json) {
    const row = (o: Orphan) => ({ dir: o.dir, home: o.home ?? null, kind: o.kind, bytes: o.bytes });
    ctx.json({ destroyed: destroyed.map(row), skipped: skipped.map(row), bytes });
    return;
  }
  for (const o of destroyed) ctx.print(`deleted ${describeOrphan(o)}`);
  for (const o of skipped)
    ctx.warn(`kept ${o.dir}: it is no longer an orphan (its home is back, or it was removed)`);
  ctx.print(`${destroyed.length} deleted, ${formatBytes(bytes)} freed`);
}

export const destroy = command({
  name: 'destroy',
  summary:
    "Delete LEASH_HOME's embedded database (stopping it), or with --orphans the clusters whose LEASH_HOME is gone.",
  usage: 'db destroy [--orphans [dir…]] [--yes] [--json]',
  help: [
    '--yes, -y     do not ask; required when stdin or stdout is not a terminal',
    '--orphans     delete the clusters `db status` lists as having lost their LEASH_HOME instead (all, or the',
    '  dirs named); one still running is stopped first',
    '--json        print what was deleted as JSON',
  ],
  options: { yes: { type: 'boolean', short: 'y' }, orphans: { type: 'boolean' }, json: { type: 'boolean' } },
  positionals: { min: 0, max: Number.MAX_SAFE_INTEGER },
  async run(ctx, v, positionals) {
    if (positionals.length && !v.orphans)
      throw new CliError(
        'directories are named only with --orphans; usage: leash db destroy [--orphans [dir…]]',
        EXIT.usage,
      );
    if (v.orphans) await destroyOrphans(ctx, positionals, v.yes, v.json);
    else await destroyHome(ctx, v.yes, v.json);
  },
});
