// What leash alerts about: one event type per kind (sent as the webhook's `event`), and its one-line text (Slack's
// `text`). Delivery, retries and when an alert is raised are alerts.ts.
import type { ApprovalEvent } from '../approvals/loop.js';
import { ACTION_VERBS, DOOR_NAMES, type ActionDoor, type ActionKind } from '../audit/action-words.js';
import type { TripwireEvent } from '../audit/write.js';
import { formatUsd } from '../policy/money.js';
import type { AuthFailure } from '../server/auth-throttle.js';

/** What an alert reports, one variant per kind; the webhook sends it as `event`. */
export type AlertEvent =
  | {
      type: 'cap_reached';
      scope: string;
      window: string;
      key_id: string | null;
      agent: string | null;
      tool: string;
      details: Record<string, unknown>;
    }
  | {
      type: 'denial_burst';
      key_id: string;
      agent: string | null;
      denials: number;
      window_seconds: number;
      last_code: string;
    }
  | {
      type: 'key_revoked';
      key_ids: string[];
      /** Who revoked: an operator's name, `admin` (the admin token), or what the CLI was told. */
      by: string;
      /** The door: admin_api, console or cli. */
      via: ActionDoor;
      reason: string;
    }
  | {
      /** An operator changed something (approve, deny, rotate, policy apply, credential or operator change). */
      type: 'operator_action';
      action: ActionKind;
      target: string;
      by: string;
      via: ActionDoor;
    }
  | {
      /**
       * A tripwire went over its line: `tripwire_tripped` when it paused its scope or revoked its keys (action pause
       * or revoke), `tripwire_alert` when it only alerts (then: alert, or mode warn; `would` says what then it has).
       * Figures are calls, denials or recipients, or micro-USD for spend; the call over the line included.
       */
      type: 'tripwire_tripped' | 'tripwire_alert';
      wire: string;
      policy: string;
      metric: TripwireEvent['metric'];
      figure: number;
      limit: number;
      window_seconds: number;
      scope_kind: TripwireEvent['scope_kind'];
      scope: string;
      mode: TripwireEvent['mode'];
      action: TripwireEvent['action'];
      would?: TripwireEvent['would'];
      revoked_keys?: number;
      key_id: string;
      agent: string;
      tool: string;
      audit_id: string;
    }
  | { type: 'stuck_pending'; rows: number; oldest: string }
  | {
      /** Calls whose outcome stayed unknown past LEASH_UNKNOWN_ALERT_AGE (sent when one joins the list). */
      type: 'unknown_outcomes';
      rows: number;
      oldest: string;
      older_than_seconds: number;
      /** The oldest ones' audit ids (at most 20). */
      audit_ids: string[];
    }
  | ApprovalEvent
  | {
      type: 'auth_failures';
      /** Wrong secrets checked, and attempts refused unchecked (429) from addresses already blocked. */
      failures: number;
      throttled: number;
      window_seconds: number;
      kinds: AuthFailure['kind'][];
      addresses: number;
      /** The busiest addresses, most attempts first. */
      top: { address: string; attempts: number }[];
    };

const doorText = (via: ActionDoor) => `the ${DOOR_NAMES[via]}`;

/** An alert as one line of text for Slack's incoming webhooks (and anything reading `text`). */
export function alertText(e: AlertEvent): string {
  switch (e.type) {
    case 'cap_reached':
      return `:no_entry: leash: ${e.window} cap reached for ${e.scope} (agent ${e.agent ?? '?'}, tool ${e.tool}); further calls are denied until it resets.`;
    case 'denial_burst':
      return `:warning: leash: key ${e.key_id} (agent ${e.agent ?? '?'}) was denied ${e.denials} times in ${e.window_seconds}s (last: ${e.last_code}). The agent may be looping.`;
    case 'key_revoked':
      return `:lock: leash: ${e.by} revoked ${e.key_ids.length} key(s) via ${doorText(e.via)}: ${e.key_ids.join(', ')} (${e.reason}).`;
    case 'operator_action':
      return `:memo: leash: ${e.by} ${ACTION_VERBS[e.action]} ${e.target} via ${doorText(e.via)}.`;
    case 'approval_requested':
      return `:raised_hand: leash: ${e.tool} for ${formatUsd(e.usd_micros)} by agent ${e.agent ?? '?'}${e.run_id ? ` (run ${e.run_id})` : ''} is waiting for approval until ${e.expires_at}: ${e.url ?? `leash approvals show ${e.approval_id}`}`;
    case 'approval_expired':
      return `:hourglass: leash: approval request ${e.approval_id} (${e.tool} for ${formatUsd(e.usd_micros)}, agent ${e.agent ?? '?'}) expired at ${e.expires_at}.`;
    case 'tripwire_tripped':
    case 'tripwire_alert': {
      const amount = (n: number) => (e.metric === 'spend_usd_per_10m' ? formatUsd(n) : String(n));
      const then =
        e.type === 'tripwire_alert'
          ? `alert only${e.would ? ` (would ${e.would})` : ''}`
          : e.action === 'revoke'
            ? `its keys were revoked (${e.revoked_keys ?? 0})`
            : `it is paused until an operator resumes it: leash keys resume ${e.scope_kind === 'key' ? '' : `--${e.scope_kind} `}${e.scope}`;
      return `:rotating_light: leash: tripwire '${e.wire}' (policy ${e.policy}) ${e.type === 'tripwire_alert' ? 'alerts' : 'tripped'} for ${e.scope_kind} ${e.scope}: ${amount(e.figure)} ${e.metric} in ${e.window_seconds}s, over its limit of ${amount(e.limit)}; ${then}. Agent ${e.agent}, tool ${e.tool}, audit ${e.audit_id}.`;
    }
    case 'stuck_pending':
      return `:hourglass: leash: ${e.rows} audit row(s) have been pending or unknown since ${e.oldest}; run 'leash reconcile'.`;
    case 'unknown_outcomes':
      return `:question: leash: ${e.rows} call(s) have had an unknown outcome for over ${e.older_than_seconds}s (oldest since ${e.oldest}: ${e.audit_ids.slice(0, 5).join(', ')}): the vendor may have acted, so the money they reserved stays reserved. Run 'leash reconcile'; 'leash audit query --outcome unknown' lists them; settle one the vendor cannot tell about with 'leash reconcile --settle <id>'.`;
    case 'auth_failures':
      return `:rotating_light: leash: ${e.failures + e.throttled} failed authentication attempts (${e.kinds.join(', ')}) in ${e.window_seconds}s from ${e.addresses} address(es), busiest ${e.top.map((t) => `${t.address} ×${t.attempts}`).join(', ')}; ${e.throttled} were refused with 429. Someone may be guessing secrets.`;
  }
}
