// Covers how tables and tail lines fit a width: columns hidden by priority, only free text cut, help wrapped.
import { describe, expect, it } from 'vitest';
import { fitCells, hiddenNote, layoutColumns, table, wrapText } from './output.js';

const ID = '01a24dad-19f2-7560-bdcb-f53699aa432b';
const TS = '2026-12-06T23:25:19.756Z';

describe('layoutColumns', () => {
  it('hides the highest priority numbers first and keeps the rest in their declared order', () => {
    const columns = [
      { name: 'id', priority: 0 },
      { name: 'agent', priority: 2 },
      { name: 'tool', priority: 1 },
      { name: 'note', priority: 3 },
    ];
    expect(layoutColumns(columns, [36, 14, 12, 30], 80)).toEqual({
      shown: [0, 1, 2],
      widths: [36, 14, 12, 0],
      hidden: ['note'],
    });
    expect(layoutColumns(columns, [36, 14, 12, 30], 60).hidden).toEqual(['agent', 'note']);
  });

  it('stops at the first column that does not fit: a later, narrower one is hidden too', () => {
    const l = layoutColumns(['id', 'expires_at', 'usd'], [36, 24, 6], 60);
    expect(l.hidden).toEqual(['expires_at', 'usd']);
  });

  it('cuts only free text, first down to its minimum, and never an id or a time', () => {
    const l = layoutColumns(
      [
        { name: 'ts', priority: 0 },
        { name: 'decision', priority: 0, cut: true, min: 22 },
        { name: 'id', priority: 0 },
      ],
      [24, 29, 36],
      80,
    );
    expect(l.widths).toEqual([24, 16, 36]);
    // Ids and times wider than the terminal stay whole.
    expect(layoutColumns(['ts', { name: 'id', priority: 0 }], [24, 36], 40).widths).toEqual([24, 36]);
  });

  it('shows a free-text column cut to the room left rather than hiding it', () => {
    const l = layoutColumns(['id', { name: 'label', priority: 1, cut: true }], [12, 69], 40);
    expect([l.widths, l.hidden]).toEqual([[12, 26], []]);
  });
});

describe('table', () => {
  const rows = [{ id: ID, ts: new Date(TS), status: 'pending', note: 'n'.repeat(50) }];

  it('prints ids and times whole at 80 columns and says once which columns are hidden', () => {
    const out = table(rows, ['id', 'ts', 'status', 'note'], { width: 80 });
    expect(out).toBe(
      `ID${' '.repeat(36)}TS${' '.repeat(24)}STATUS\n${ID}  ${TS}  pending\n` +
        '1 column hidden (note); --wide shows them\n',
    );
  });

  it('prints every column with no width limit', () => {
    expect(table(rows, ['id', 'ts', 'status', 'note'])).toContain('n'.repeat(50));
  });
});

describe('fitCells', () => {
  it('cuts the cell that pushed the line over, not the ones after it', () => {
    const cells = fitCells(
      [
        { text: TS, width: 24 },
        { text: 'a'.repeat(40), width: 14, cut: true },
        { text: 'issue_refund', width: 14, cut: true },
        { text: 'allowed', width: 22, cut: true },
      ],
      80,
    );
    expect(cells.join('  ')).toBe(`${TS}  ${'a'.repeat(28)}…  issue_refund    allowed`);
    expect(cells.join('  ')).toHaveLength(80);
  });

  it('never cuts a cell not marked cut', () => {
    expect(
      fitCells(
        [
          { text: ID, width: 10 },
          { text: TS, width: 10 },
        ],
        40,
      ).join('  '),
    ).toBe(`${ID}  ${TS}`);
  });
});

describe('hiddenNote and wrapText', () => {
  it('names the hidden columns when that fits, and only counts them when it does not', () => {
    expect(hiddenNote(['a', 'b'], 80)).toBe('2 columns hidden (a, b); --wide shows them');
    expect(hiddenNote(['a-long-name', 'another-long-name'], 40)).toBe('2 columns hidden; --wide shows them');
  });

  it('wraps words to the width without breaking inside square brackets', () => {
    expect(wrapText('audit query [--agent A] [--decision allowed|denied|held] [--json]', 30)).toEqual([
      'audit query [--agent A]',
      '[--decision allowed|denied|held]',
      '[--json]',
    ]);
  });
});
