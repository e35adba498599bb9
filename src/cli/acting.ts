// Who the CLI records as acting, and the alert it sends after a change: shared by the commands that change things.
import { userInfo } from 'node:os';
import type { AlertEvent } from '../admin/alert-events.js';
import { startAlerts } from '../admin/alerts.js';
import { MAX_ACTOR, type Actor } from '../audit/operator-actions.js';
import { createLogger } from '../config/logger.js';
import { CliError, EXIT, type Context } from './command.js';

/** The `--by` option and its help line, for every command that changes something. */
export const BY_OPTION = { by: { type: 'string' } } as const;
export const BY_HELP =
  '--by NAME    who is acting, as recorded (default $LEASH_OPERATOR, else cli:<your user name>)';

/**
 * Who acts from this terminal: `--by NAME`, else LEASH_OPERATOR, else `cli:<os user>`. The CLI reaches the database
 * directly, so the name is taken on trust (operator_actions records the door as `cli`); a name with control
 * characters or over 200 characters is a usage error.
 */
export function cliActor(ctx: Context, by: string | undefined): Actor {
  const given = by ?? ctx.io.env.LEASH_OPERATOR;
  const flag = by !== undefined ? '--by' : 'LEASH_OPERATOR';
  if (given !== undefined) {
    const name = given.trim();
    // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
    if (!name || name.length > MAX_ACTOR || /[\u0000-\u001f\u007f-\u009f]/.test(name))
      throw new CliError(
        `${flag}: expected a name of 1-${MAX_ACTOR} printable characters, e.g. alice`,
        EXIT.usage,
      );
    return { name, via: 'cli' };
  }
  try {
    return { name: `cli:${userInfo().username}`, via: 'cli' };
  } catch {
    return { name: 'cli', via: 'cli' };
  }
}

/**
 * Sends one alert when LEASH_ALERT_WEBHOOK_URL is set, after the change committed (an alert is news, never a
 * precondition): waits at most 5 s for delivery, then gives up quietly.
 */
export async function announce(ctx: Context, event: AlertEvent): Promise<void> {
  const config = ctx.config();
  if (!config.alertWebhookUrl) return;
  const alerts = startAlerts({ config, log: createLogger(config) });
  alerts.notify(event);
  await alerts.drain(5_000);
  await alerts.close();
}
