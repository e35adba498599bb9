// One pipeline event, many listeners: alerts, metrics and the per-call log line each get every event.
import type { Logger } from '../config/logger.js';
import type { PipelineEvent } from '../pipeline/deps.js';

type Listener = (event: PipelineEvent) => void;

/** Calls every listener; one that throws never keeps the others (or the call) from going on. */
export function fanOut(...listeners: (Listener | undefined)[]): Listener {
  const all = listeners.filter((l): l is Listener => l !== undefined);
  return (event) => {
    for (const l of all) {
      try {
        l(event);
      } catch {
        // A listener's failure must not affect a tool call or the other listeners.
      }
    }
  };
}

const round = (ms: number | null) => (ms === null ? null : Math.round(ms * 10) / 10);

/** One JSON line per call on stderr at LEASH_LOG=info: audit id, tool, decision, code and latencies. */
export function callLog(log: Logger): Listener {
  return (e) => {
    if (e.type !== 'finished') return;
    log.info('call', {
      audit_id: e.audit_id,
      tool: e.tool,
      door: e.door,
      decision: e.decision,
      code: e.code,
      ms: round(e.ms),
      admit_ms: round(e.admit_ms),
      vendor_ms: round(e.vendor_ms),
    });
  };
}

/**
 * The logger alerts write to, with a hook on a final delivery failure (alerts say so in one error line).
 * Lets metrics count failed deliveries without alerts knowing about metrics.
 */
export function onAlertFailure(log: Logger, failed: () => void): Logger {
  return {
    ...log,
    error(msg, fields) {
      if (msg.startsWith('alert webhook failed')) failed();
      log.error(msg, fields);
    },
  };
}
