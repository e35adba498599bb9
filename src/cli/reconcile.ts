import { reconcile } from '../pipeline/reconcile.js';
import { CliError, EXIT, command, type CommandGroup } from './command.js';
import { openRuntime } from './runtime.js';

const reconcileCmd = command({
  name: '',
  summary: 'Settle audit rows left pending/unknown (crash, timeout) and costs the vendor prices later.',
  usage: 'reconcile [--grace 30] [--sandbox] [--json]',
  help: [
    '--grace S   leave rows younger than S seconds alone (default 30)',
    '--sandbox   reconcile sandbox rows (only meaningful inside a sandbox server)',
    '--json      print the summary as JSON',
  ],
  options: {
    grace: { type: 'string', default: '30' },
    sandbox: { type: 'boolean' },
    json: { type: 'boolean' },
  },
  async run(ctx, v) {
    const grace = Number(v.grace);
    if (!Number.isFinite(grace) || grace < 0)
      throw new CliError('--grace must be a number of seconds', EXIT.usage);
    const runtime = await openRuntime(ctx.config(), { sandbox: Boolean(v.sandbox), poolMax: 2 });
    try {
      const s = await reconcile(runtime.deps, { graceSeconds: grace });
      if (v.json) ctx.json(s);
      else {
        ctx.print(
          `examined ${s.examined}: ${s.succeeded} succeeded, ${s.failed} failed, ${s.priced} priced, ${s.still_unknown} still unknown, ${s.skipped} skipped`,
        );
        for (const r of s.rows)
          ctx.print(
            `  ${r.id}  ${r.tool.padEnd(12)}  ${r.before} → ${r.after}${r.note ? `  (${r.note})` : ''}`,
          );
      }
      return s.still_unknown > 0 ? EXIT.failure : EXIT.ok;
    } finally {
      await runtime.close();
    }
  },
});

export const reconcileCommands: CommandGroup = { name: 'reconcile', commands: [reconcileCmd] };
