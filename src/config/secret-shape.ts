// Here, below credentials: config checks the vendors' secret env vars at start, and credentials when one is stored.
/** What a well-formed value of one secret field looks like; each vendor folder declares its own. */
export interface SecretShape {
  /** The whole value must match. */
  pattern: RegExp;
  /** What was expected, as the error says it: e.g. `"AC" followed by 32 hex digits`. */
  expected: string;
  /** Look-alikes worth naming when the value does not match (a Twilio API key SID, a Stripe publishable key). */
  mistakes?: readonly { pattern: RegExp; hint: string }[];
  /** A remark on a well-formed value that should still be reconsidered (a full Stripe secret key, say). */
  warn?(value: string): string | undefined;
}

/** Secret field name → its shape. */
export type SecretShapes = Readonly<Record<string, SecretShape>>;

export interface ShapeReport {
  /** One line per malformed field; none means the credential may be stored. */
  problems: string[];
  /** Well-formed but worth a word on stderr. */
  warnings: string[];
}

/** Shortest value whose first characters may be shown: shorter, and they would be much of the secret. */
const MIN_FOR_PREFIX = 16;

/** A value as an error may describe it: its length and, for a long one, its first three characters. Never more. */
export function describeValue(value: string): string {
  const prefix = value.slice(0, 3);
  const shown =
    value.length >= MIN_FOR_PREFIX && /^[A-Za-z0-9_]{3}$/.test(prefix) ? ` starting "${prefix}…"` : '';
  return `${value.length} characters${shown}`;
}

/**
 * Checks each given field against the vendor's declared shapes (fields without one pass). `label` names a field
 * as the user gave it, e.g. `account_sid (TWILIO_ACCOUNT_SID)`. Messages never contain the value.
 */
export function checkSecretShapes(
  vendor: string,
  secret: Readonly<Record<string, string | undefined>>,
  shapes: SecretShapes | undefined,
  label: (field: string) => string = (field) => field,
): ShapeReport {
  const report: ShapeReport = { problems: [], warnings: [] };
  for (const [field, value] of Object.entries(secret)) {
    const shape = shapes?.[field];
    if (!shape || value === undefined) continue;
    const name = `${vendor} ${label(field)}`;
    if (value !== value.trim()) {
      report.problems.push(`${name}: has spaces or a line break around it (${describeValue(value)})`);
      continue;
    }
    if (!shape.pattern.test(value)) {
      const hint = shape.mistakes?.find((m) => m.pattern.test(value))?.hint;
      report.problems.push(
        `${name}: expected ${shape.expected}; got ${describeValue(value)}${hint ? ` (${hint})` : ''}`,
      );
      continue;
    }
    const warning = shape.warn?.(value);
    if (warning) report.warnings.push(`${name}: ${warning}`);
  }
  return report;
}
