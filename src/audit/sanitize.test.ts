// Covers making agent-controlled text storable in Postgres text/jsonb: escapes, per-string and per-value caps, hashes.
import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { canonicalJson } from '../policy/compile.js';
import { auditHasher } from './audit-hash.js';
import { MAX_REQUEST_BYTES, MAX_STRING_CHARS, safeJson as safeJsonUnder, safeText } from './sanitize.js';

const NUL = String.fromCharCode(0);
const KEY = Buffer.alloc(32, 3);
const h = auditHasher(KEY);
// The hash a cut value keeps: HMAC-SHA256 of its canonical JSON under the audit key.
const sha = (v: unknown) => createHmac('sha256', KEY).update(canonicalJson(v)).digest('hex');
const safeJson = (v: Record<string, unknown>) => safeJsonUnder(v, h);

describe('safeText', () => {
  it.each([
    ['a NUL', `a${NUL}b`, 'a\\u0000b'],
    ['a lone high surrogate', 'a\ud800b', 'a\ufffdb'],
    ['a lone low surrogate', 'a\udc00b', 'a\ufffdb'],
    ['a trailing high surrogate', 'ab\ud83d', 'ab\ufffd'],
  ])('escapes %s', (_what, input, output) => {
    expect(safeText(input)).toEqual({ text: output, altered: true });
  });

  it('leaves ordinary text, emoji pairs included, untouched', () => {
    const text = 'Refund ✓ 😀 done';
    expect(safeText(text)).toEqual({ text, altered: false });
  });

  it('cuts long text at the cap, marks it and never splits a surrogate pair', () => {
    const long = `${'a'.repeat(MAX_STRING_CHARS - 1)}😀${'b'.repeat(100)}`;
    const { text, altered } = safeText(long);
    expect(altered).toBe(true);
    expect(text.startsWith('a'.repeat(MAX_STRING_CHARS - 1))).toBe(true);
    expect(text).toContain(`[truncated, ${long.length} chars]`);
    expect(text.charCodeAt(MAX_STRING_CHARS - 1)).not.toBe(0xd83d);
    expect(text.length).toBeLessThan(MAX_STRING_CHARS + 40);
  });
});

describe('safeJson', () => {
  it('returns a small clean value as it is, with no hash', () => {
    const v = { to: ['ann@acme.com'], subject: 'Hi', n: 1, ok: true, none: null };
    expect(safeJson(v)).toEqual({ value: v, altered: false });
  });

  it('escapes strings and keys at any depth and keeps the keyed hash of the original', () => {
    const v = { [`k${NUL}`]: [{ deep: `x${NUL}\udfff` }], subject: 'ok' };
    const r = safeJson(v);
    expect(r.value).toEqual({ 'k\\u0000': [{ deep: 'x\\u0000\ufffd' }], subject: 'ok' });
    expect(r.altered).toBe(true);
    expect(r.sha256).toBe(sha(v));
    expect(JSON.stringify(r.value)).not.toMatch(/(?<!\\)\\u(0000|d[89a-f])/i); // what jsonb refuses
  });

  it('caps each string and summarises a value whose JSON is over the cap', () => {
    const one = safeJson({ body: 'x'.repeat(10_000) });
    expect(String(one.value.body).length).toBeLessThan(MAX_STRING_CHARS + 40);
    const many = Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`f${i}`, 'y'.repeat(1000)]));
    const r = safeJson(many);
    expect(r.value).toEqual({
      _truncated: true,
      bytes: Buffer.byteLength(canonicalJson(many)),
      sha256: sha(many),
      keys: Object.keys(many).slice(0, 20),
    });
    expect(Buffer.byteLength(JSON.stringify(r.value))).toBeLessThan(MAX_REQUEST_BYTES);
  });

  it('bounds depth and huge arrays without throwing', () => {
    let deep: Record<string, unknown> = { leaf: 1 };
    for (let i = 0; i < 200; i++) deep = { d: deep };
    expect(JSON.stringify(safeJson(deep).value)).toContain('[too deep]');
    const wide = safeJson({ list: Array.from({ length: 100_000 }, () => 0) });
    expect(wide.value).toMatchObject({ _truncated: true, keys: ['list'] });
  });

  it('turns values JSON cannot hold into ones it can', () => {
    const r = safeJson({ inf: Infinity, big: 10n, when: new Date(0), fn: () => 1, skip: undefined });
    expect(r.value).toEqual({ inf: null, big: '10', when: '1970-01-01T00:00:00.000Z' });
  });
});
