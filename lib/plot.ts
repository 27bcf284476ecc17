/**
 * A small SVG chart of training curves (loss and accuracy per epoch), written without
 * dependencies so that `densetorch train --plot` works anywhere.
 */
import * as fs from 'node:fs';
import type { EpochLogs } from './training';

interface Series {
  label: string;
  color: string;
  values: (number | null)[];
  dashed?: boolean;
}

function panel(x0: number, title: string, series: Series[], yMax: number, epochs: number): string {
  const w = 380;
  const h = 240;
  const left = x0 + 50;
  const top = 40;
  const px = (i: number) => left + (epochs <= 1 ? w / 2 : (i / (epochs - 1)) * w);
  const py = (v: number) => top + h - (Math.min(v, yMax) / yMax) * h;
  const parts = [`<text x="${left + w / 2}" y="24" text-anchor="middle" font-weight="bold">${title}</text>`,
    `<rect x="${left}" y="${top}" width="${w}" height="${h}" fill="none" stroke="#999"/>`];
  for (let k = 0; k <= 4; k++) {
    const v = (yMax * k) / 4;
    parts.push(`<text x="${left - 6}" y="${py(v) + 4}" text-anchor="end" font-size="11">${v.toPrecision(2)}</text>`);
  }
  for (let i = 0; i < epochs; i++) parts.push(`<text x="${px(i)}" y="${top + h + 16}" text-anchor="middle" font-size="11">${i + 1}</text>`);
  parts.push(`<text x="${left + w / 2}" y="${top + h + 34}" text-anchor="middle" font-size="12">epoch</text>`);
  series.forEach((s, k) => {
    const points = s.values.map((v, i) => (v === null ? null : `${px(i).toFixed(1)},${py(v).toFixed(1)}`)).filter((p): p is string => p !== null);
    if (points.length) parts.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6,4"' : ''} points="${points.join(' ')}"/>`);
    parts.push(`<text x="${left + 8}" y="${top + 16 + 14 * k}" font-size="11" fill="${s.color}">${s.label}</text>`);
  });
  return parts.join('\n');
}

/** Writes `file` as an SVG with a loss panel and an accuracy panel. */
export function writePlot(file: string, epochs: readonly EpochLogs[]): void {
  const loss = epochs.map((e) => e.loss);
  const valLoss = epochs.map((e) => e.valLoss);
  const maxLoss = Math.max(1e-6, ...loss, ...valLoss.filter((v): v is number => v !== null)) * 1.05;
  const svg = [
    '<svg xmlns="http://www.w3.org/2000/svg" width="900" height="330" font-family="sans-serif">',
    '<rect width="100%" height="100%" fill="white"/>',
    panel(0, 'loss', [
      { label: 'train', color: '#1f77b4', values: loss },
      { label: 'test', color: '#d62728', values: valLoss, dashed: true },
    ], maxLoss, epochs.length),
    panel(450, 'accuracy', [
      { label: 'train', color: '#1f77b4', values: epochs.map((e) => e.accuracy) },
      { label: 'test', color: '#d62728', values: epochs.map((e) => e.valAccuracy), dashed: true },
      ...(epochs.some((e) => e.emaValAccuracy !== null) ? [{ label: 'test (EMA)', color: '#2ca02c', values: epochs.map((e) => e.emaValAccuracy), dashed: true }] : []),
    ], 1, epochs.length),
    '</svg>',
    '',
  ].join('\n');
  fs.writeFileSync(file, svg);
}
