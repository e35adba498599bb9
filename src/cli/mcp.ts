import { startPartitionLoop } from '../audit/partitions.js';
import { runStdio } from '../server/stdio.js';
import { CliError, EXIT, command, type CommandGroup } from './command.js';
import { callLog } from './events.js';
import { openRuntime, warnIfUnkeyed } from './runtime.js';

const mcp = command({
  name: '',
  summary:
    'Serve MCP over stdio for the vault key in LEASH_VAULT_KEY (for Claude Desktop, Claude Code, VS Code).',
  usage: 'mcp [--sandbox]',
  help: ['--sandbox   route vendor calls to built-in local fakes'],
  options: { sandbox: { type: 'boolean' } },
  async run(ctx, v) {
    const config = ctx.config();
    if (!config.vaultKey)
      throw new CliError('set LEASH_VAULT_KEY to the vault key (lsk_…) this agent should use', EXIT.usage);
    warnIfUnkeyed(ctx, config);
    const runtime = await openRuntime(config, { sandbox: Boolean(v.sandbox), poolMax: 4 });
    // One JSON line per call on stderr at LEASH_LOG=info (stdout is the protocol).
    runtime.deps.onEvent = callLog(runtime.deps.log);
    // A host may keep a stdio server running for months with no `leash serve` anywhere: it keeps audit_log's
    // monthly partitions created ahead too (one replica at a time does it; the others skip).
    const partitions = startPartitionLoop(runtime.deps.db, runtime.deps.log);
    try {
      await runStdio(runtime.deps, config.vaultKey);
    } finally {
      await partitions.stop();
      await runtime.close();
    }
  },
});

export const mcpCommands: CommandGroup = { name: 'mcp', commands: [mcp] };
