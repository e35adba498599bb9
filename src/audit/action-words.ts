// What operators do and through which door, in the words people read: the one list the server (operator_actions
// rows, alerts, the CLI) and the console's browser bundle (console/views/actions.ts) share. Strings only, no imports:
// the browser build takes it as it is.

/** Each action as recorded in `operator_actions.action`, with its verb in past tense: "alice revoked key …". */
export const ACTION_VERBS = {
  'approval.approve': 'approved',
  'approval.deny': 'denied',
  'key.revoke': 'revoked',
  'key.rotate': 'rotated',
  'key.pause': 'paused',
  'key.resume': 'resumed',
  'policy.apply': 'applied',
  'policy.shadow': 'shadowed',
  'policy.promote': 'promoted',
  'policy.unshadow': 'dropped the shadow of',
  'credential.set': 'set',
  'credential.remove': 'removed',
  'operator.add': 'added',
  'operator.remove': 'removed',
  'audit.export': 'exported',
  'audit.prune': 'pruned',
} as const satisfies Readonly<Record<string, string>>;

/** What operators do, as recorded in `action`. */
export type ActionKind = keyof typeof ACTION_VERBS;

export const ACTION_KINDS = Object.keys(ACTION_VERBS) as readonly ActionKind[];

/** The door an action came through. `system`: a caller that named no one (the demo, tests, scripts). */
export type ActionDoor = 'admin_api' | 'console' | 'cli' | 'link' | 'system';

/** Each door as people name it. */
export const DOOR_NAMES: Readonly<Record<ActionDoor, string>> = {
  admin_api: 'admin API',
  console: 'console',
  cli: 'CLI',
  link: 'signed link',
  system: 'system',
};

/** The verb of a recorded action; one this build does not know (written by a newer leash) as it is. */
export const actionVerb = (action: string): string =>
  (ACTION_VERBS as Readonly<Record<string, string>>)[action] ?? action;

/** The name of a recorded door; one this build does not know as it is. */
export const doorName = (via: string): string => (DOOR_NAMES as Readonly<Record<string, string>>)[via] ?? via;
