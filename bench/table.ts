/** Plain-text tables: a header row, a rule, right-aligned numbers, left-aligned words. */

export type Cell = string | number;

export function formatTable(header: string[], rows: Cell[][]): string {
  const text = rows.map((row) => row.map((cell) => String(cell)));
  const widths = header.map((h, i) => Math.max(h.length, ...text.map((row) => row[i]?.length ?? 0)));
  const numeric = header.map((_, i) =>
    rows.every((row) => typeof row[i] === 'number' || /^[\d.,/×x\s-]+$|^n\/a$/.test(String(row[i] ?? ''))),
  );
  const line = (cells: string[]) =>
    `| ${cells.map((cell, i) => (numeric[i] ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!))).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => (numeric[i] ? `${'-'.repeat(w + 1)}:` : `${'-'.repeat(w + 2)}`)).join('|')}|`;
  return [line(header), rule, ...text.map(line)].join('\n');
}

/** A number with a sensible count of significant digits for a results table. */
export function num(value: number): string {
  if (!Number.isFinite(value)) return 'n/a';
  if (value >= 100) return Math.round(value).toString();
  if (value >= 10) return value.toFixed(1);
  return value.toFixed(2);
}
