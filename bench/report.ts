/** The benchmark's table: rows with a value, a same-run baseline and their ratio; notes for the method. */

export interface Row {
  figure: string;
  value: string;
  baseline: string;
  ratio: string;
  target: string;
}

export const rows: Row[] = [];
export const notes: string[] = [];
export const say = (line: string) => process.stdout.write(`${line}\n`);
export const ms = (v: number) => `${v.toFixed(0)} ms`;
export const mb = (kb: number) => `${(kb / 1024).toFixed(1)} MB`;

export function row(figure: string, value: string, baseline: string, ratio: number | string, target: string): void {
  rows.push({ figure, value, baseline, ratio: typeof ratio === 'number' ? `${ratio.toFixed(2)}×` : ratio, target });
  say(`  ${figure}: ${value} (baseline ${baseline}; ${typeof ratio === 'number' ? ratio.toFixed(2) + '×' : ratio}; target ${target})`);
}
