#!/usr/bin/env node
'use strict';
/**
 * Mutation fuzzing of the weight-file readers (safetensors and the restricted .pth unpickler).
 *
 *   node scripts/fuzz-weights.js [--cases 10000] [--seconds 120] [--seed 1] [--out DIR] [--verbose]
 *
 * Starts from valid files (a .safetensors written by densetorch, torchvision .pth state dicts),
 * applies random mutations (bit flips, byte runs, truncation, junk appended, header-length and
 * header-JSON edits; for .pth, edits of the pickle inside the zip with its CRC recomputed so that
 * the unpickler is reached) and loads each result into a matching model with loadWeights().
 * Every case must end with the weights loaded or a WeightsError; anything else, a case taking over
 * 10 s (a hang), or the process dying (run it from a parent, as test/12-fuzz.test.js does) is a
 * finding. The input being tried is always on disk at DIR/case.* so a crash leaves its reproducer.
 * --verbose lists how often each kind of rejection happened. Stops after --cases cases or --seconds seconds, whichever comes first; exits 1 on a finding.
 */
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const zlib = require('node:zlib');
const { parseArgs } = require('node:util');
const dt = require('..');

const { values: args } = parseArgs({
  options: {
    cases: { type: 'string', default: '10000' },
    seconds: { type: 'string', default: '120' },
    seed: { type: 'string', default: '1' },
    out: { type: 'string' },
    verbose: { type: 'boolean', default: false },
  },
});
const maxCases = Number(args.cases);
const maxSeconds = Number(args.seconds);
const verbose = args.verbose;
const HANG_MS = 10000;

// A small deterministic PRNG (mulberry32) so a run can be repeated with --seed.
let state = Number(args.seed) >>> 0;
function random() {
  state = (state + 0x6d2b79f5) >>> 0;
  let t = state;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const int = (n) => Math.floor(random() * n);
const pick = (list) => list[int(list.length)];

const INTERESTING = [0, 1, -1, 255, 256, 65535, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 53, -(2 ** 31), 1e300, 0.5];

/** Generic byte-level mutations. */
function mutateBytes(input) {
  let b = Buffer.from(input);
  const rounds = 1 + int(4);
  for (let r = 0; r < rounds; r++) {
    switch (int(7)) {
      case 0: { const i = int(b.length); b[i] ^= 1 << int(8); break; } // bit flip
      case 1: { const i = int(b.length); b[i] = pick([0, 0xff, 0x7f, 0x80, int(256)]); break; } // byte set
      case 2: { const i = int(b.length); const n = Math.min(b.length - i, 1 + int(64)); for (let k = 0; k < n; k++) b[i + k] = int(256); break; } // random run
      case 3: b = b.subarray(0, int(b.length)); break; // truncate
      case 4: b = Buffer.concat([b, Buffer.from(Array.from({ length: 1 + int(256) }, () => int(256)))]); break; // junk appended
      case 5: { if (b.length < 16) break; const i = int(b.length - 8); const j = int(b.length - 8); b.copy(b, i, j, j + 8); break; } // copy a chunk
      default: { const i = int(Math.max(1, b.length - 8)); if (b.length >= i + 8) b.writeBigInt64LE(BigInt.asIntN(64, BigInt(pick(INTERESTING.filter(Number.isSafeInteger)))), i); } // interesting int64
    }
    if (b.length === 0) break;
  }
  return b;
}

/** Mutations that keep the safetensors framing but edit the header. */
function mutateSafetensors(input) {
  const choice = int(4);
  if (choice === 0) return mutateBytes(input);
  if (choice === 1) { // a random header length
    const b = Buffer.from(input);
    b.writeBigUInt64LE(BigInt.asUintN(64, BigInt(pick([0, 1, 7, 8, b.length, b.length - 8, 2 ** 32, 2 ** 53]) + int(3) - 1)));
    return b;
  }
  const n = Number(input.readBigUInt64LE(0));
  const header = JSON.parse(input.subarray(8, 8 + n).toString());
  const names = Object.keys(header).filter((k) => k !== '__metadata__');
  const name = pick(names);
  const entry = header[name];
  switch (int(8)) {
    case 0: entry.dtype = pick(['F16', 'BF16', 'F64', 'I8', 'U8', 'I32', 'I64', 'BOOL', 'C64', '', 7, null]); break;
    case 1: entry.shape = pick([[], [0], [-1], [pick(INTERESTING)], [2 ** 31, 2 ** 31, 2 ** 31], entry.shape.concat([1]), 'x']); break;
    case 2: entry.data_offsets = [pick(INTERESTING), pick(INTERESTING)]; break;
    case 3: entry.data_offsets[int(2)] += pick([-8, -4, -1, 1, 4, 8, 1e9]); break;
    case 4: delete header[name]; break;
    case 5: header[name + '.copy'] = { ...entry }; break;
    case 6: header[name] = pick([null, 1, 'x', [], { dtype: 'F32' }]); break;
    default: header.__metadata__ = pick([null, 1, [], { 'densetorch.config': '{' }, { 'densetorch.config': '{"growthRate":-1}' }]);
  }
  const text = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(text.length));
  const out = Buffer.concat([len, text, input.subarray(8 + n)]);
  return int(3) === 0 ? mutateBytes(out) : out;
}

/** Finds a stored (uncompressed) entry of a zip: where its data is and where its CRCs are. */
function zipEntry(zip, suffix) {
  const eocd = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  let at = zip.readUInt32LE(eocd + 16);
  const count = zip.readUInt16LE(eocd + 10);
  for (let i = 0; i < count; i++) {
    const nameLen = zip.readUInt16LE(at + 28);
    const name = zip.subarray(at + 46, at + 46 + nameLen).toString();
    const local = zip.readUInt32LE(at + 42);
    if (name.endsWith(suffix)) {
      const dataStart = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
      return { central: at, local, dataStart, size: zip.readUInt32LE(at + 24) };
    }
    at += 46 + nameLen + zip.readUInt16LE(at + 30) + zip.readUInt16LE(at + 32);
  }
  throw new Error(`no ${suffix} in the zip`);
}

/** Mutates the pickle or a tensor record of a .pth zip in place and fixes the CRCs, or mutates raw bytes. */
function mutatePth(input) {
  if (int(5) === 0) return mutateBytes(input);
  const zip = Buffer.from(input);
  const e = zipEntry(zip, int(10) === 0 ? '/byteorder' : '/data.pkl');
  const data = zip.subarray(e.dataStart, e.dataStart + e.size);
  const rounds = 1 + int(3);
  for (let r = 0; r < rounds; r++) {
    const i = int(data.length);
    switch (int(4)) {
      case 0: data[i] ^= 1 << int(8); break;
      case 1: data[i] = int(256); break;
      case 2: data[i] = pick([0x80, 0x7d, 0x28, 0x71, 0x58, 0x4b, 0x4a, 0x68, 0x63, 0x52, 0x74, 0x2e, 0x85, 0x86, 0x87, 0x94]); break; // pickle opcodes
      default: if (i + 4 <= data.length) data.writeInt32LE(pick([0, -1, 2 ** 31 - 1, 1 << 20, int(1000)]) | 0, i);
    }
  }
  const crc = zlib.crc32(data);
  zip.writeUInt32LE(crc, e.local + 14);
  zip.writeUInt32LE(crc, e.central + 16);
  return zip;
}

function withTimeout(promise, ms) {
  let timer;
  return Promise.race([promise.finally(() => clearTimeout(timer)), new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`HANG: no answer in ${ms} ms`)), ms); })]);
}

async function main() {
  const dir = args.out ?? fs.mkdtempSync(path.join(os.tmpdir(), 'densetorch-fuzz-'));
  fs.mkdirSync(dir, { recursive: true });
  const tinyCifar = { growthRate: 4, blockConfig: [2, 2], numInitFeatures: 8, bnSize: 2, numClasses: 3, stem: 'cifar' };
  const fixtures = path.join(__dirname, '..', 'test', 'fixtures');
  const pthConfig = { ...JSON.parse(fs.readFileSync(path.join(fixtures, 'tiny_densenet.json'), 'utf8')).config, stem: 'imagenet' };
  const goodSafetensors = path.join(dir, 'seed.safetensors');
  await new dt.DenseNet(tinyCifar).save(goodSafetensors);
  const seeds = [
    { kind: 'safetensors', bytes: fs.readFileSync(goodSafetensors), model: new dt.DenseNet(tinyCifar), mutate: mutateSafetensors },
    { kind: 'pth', bytes: fs.readFileSync(path.join(fixtures, 'tiny_densenet.pth')), model: new dt.DenseNet(pthConfig), mutate: mutatePth },
    { kind: 'pth', bytes: fs.readFileSync(path.join(fixtures, 'tiny_densenet_legacy_keys.pth')), model: new dt.DenseNet(pthConfig), mutate: mutatePth },
  ];
  const tally = { loaded: 0, WeightsError: 0 };
  const findings = [];
  const reasons = new Map();
  const started = Date.now();
  let n = 0;
  for (; n < maxCases && (Date.now() - started) / 1000 < maxSeconds; n++) {
    const seed = seeds[n % seeds.length];
    const file = path.join(dir, `case.${seed.kind}`);
    const bytes = seed.mutate(seed.bytes);
    fs.writeFileSync(file, bytes);
    try {
      await withTimeout(seed.model.loadWeights(file), HANG_MS);
      tally.loaded++;
    } catch (err) {
      if (err instanceof dt.WeightsError) {
        tally.WeightsError++;
        const reason = `${seed.kind}: ${err.message.replace(/^.*?(case\.\w+)[: ]*/, '').replace(/'[^']*'|\d+/g, '#').slice(0, 60)}`;
        reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
      } else {
        const keep = path.join(dir, `finding-${findings.length}.${seed.kind}`);
        fs.writeFileSync(keep, bytes);
        findings.push(`${err.name}: ${err.message} (input kept at ${keep})`);
        if (/^HANG/.test(err.message)) break;
      }
    }
    if (n > 0 && n % 2000 === 0) console.log(`  ${n} cases, ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }
  const seconds = (Date.now() - started) / 1000;
  console.log(`fuzzed ${n} weight files in ${seconds.toFixed(1)} s: ${tally.loaded} loaded, ${tally.WeightsError} rejected with WeightsError, ${findings.length} finding(s)`);
  if (verbose) for (const [r, c] of [...reasons].sort((a, b) => b[1] - a[1]).slice(0, 40)) console.log(`  ${String(c).padStart(6)}  ${r}`);
  for (const f of findings.slice(0, 20)) console.log(`  FINDING ${f}`);
  if (findings.length === 0 && !args.out) fs.rmSync(dir, { recursive: true, force: true });
  process.exitCode = findings.length === 0 ? 0 : 1;
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
