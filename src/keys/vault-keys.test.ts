// Covers the vault key format and the constant-time secret check.
import { describe, expect, it } from 'vitest';
import { hashSecret, parseVaultKey, secretMatches } from './vault-keys.js';

const key = `lsk_${'a'.repeat(12)}_${'b2'.repeat(26)}`;

describe('vault key format', () => {
  it('parses lsk_<id>_<secret>', () => {
    expect(parseVaultKey(key)).toEqual({ id: 'a'.repeat(12), secret: 'b2'.repeat(26) });
  });
  it.each([
    '',
    'lsk_',
    `sk_${'a'.repeat(12)}_${'b'.repeat(52)}`,
    `lsk_${'a'.repeat(11)}_${'b'.repeat(52)}`,
    `lsk_${'A'.repeat(12)}_${'b'.repeat(52)}`,
  ])('rejects the malformed key %j', (bad) => expect(parseVaultKey(bad)).toBeUndefined());
  it('matches only the secret whose hash is stored', () => {
    const stored = hashSecret('b2'.repeat(26));
    expect(secretMatches('b2'.repeat(26), stored)).toBe(true);
    expect(secretMatches('b3'.repeat(26), stored)).toBe(false);
    expect(stored.toString('hex')).not.toContain('b2b2');
  });
});
