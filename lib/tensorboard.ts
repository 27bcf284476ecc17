/**
 * Training logs people already read: TensorBoard event files (TFRecord framing with masked
 * CRC32C; `Event`/`Summary` protobufs through protobufjs) and the same records as `metrics.jsonl`.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { crc32c } from '@aws-crypto/crc32c';
import * as protobuf from 'protobufjs';
import type { BatchLogs, EpochLogs } from './training';

/** The protobuf messages TensorBoard reads (tensorflow/core/util/event.proto, summary.proto, the hparams plugin's). */
function schema(): { Event: protobuf.Type; HParamsPluginData: protobuf.Type } {
  // (Map fields, `keyType`, are IMapField: the literal is asserted as a namespace description.)
  const root = protobuf.Root.fromJSON(({
    nested: {
      tensorboard: {
        nested: {
          Event: {
            oneofs: { what: { oneof: ['fileVersion', 'summary'] } },
            fields: { wallTime: { type: 'double', id: 1 }, step: { type: 'int64', id: 2 }, fileVersion: { type: 'string', id: 3 }, summary: { type: 'Summary', id: 5 } },
          },
          Summary: {
            fields: { value: { rule: 'repeated', type: 'Value', id: 1 } },
            nested: {
              Value: {
                fields: { tag: { type: 'string', id: 1 }, simpleValue: { type: 'float', id: 2 }, metadata: { type: 'SummaryMetadata', id: 9 } },
              },
            },
          },
          SummaryMetadata: {
            fields: { pluginData: { type: 'PluginData', id: 1 } },
            nested: { PluginData: { fields: { pluginName: { type: 'string', id: 1 }, content: { type: 'bytes', id: 2 } } } },
          },
          HParamsPluginData: {
            oneofs: { data: { oneof: ['sessionStartInfo'] } },
            fields: { version: { type: 'int32', id: 1 }, sessionStartInfo: { type: 'SessionStartInfo', id: 3 } },
          },
          SessionStartInfo: {
            fields: { hparams: { keyType: 'string', type: 'PbValue', id: 1 }, startTimeSecs: { type: 'double', id: 5 } },
          },
          // google.protobuf.Value, the numbers and strings kinds.
          PbValue: {
            oneofs: { kind: { oneof: ['numberValue', 'stringValue', 'boolValue'] } },
            fields: { numberValue: { type: 'double', id: 2 }, stringValue: { type: 'string', id: 3 }, boolValue: { type: 'bool', id: 4 } },
          },
        },
      },
    },
  }) as protobuf.INamespace);
  return { Event: root.lookupType('tensorboard.Event'), HParamsPluginData: root.lookupType('tensorboard.HParamsPluginData') };
}

let types: ReturnType<typeof schema> | undefined;
/** The message types, built once. @internal */
export function eventTypes(): ReturnType<typeof schema> {
  types ??= schema();
  return types;
}

/** TFRecord's masked CRC32C of `data`. @internal */
export function maskedCrc32c(data: Uint8Array): number {
  const crc = crc32c(data);
  return ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

/** One TFRecord: length (uint64 LE), its masked CRC, the data, the data's masked CRC. @internal */
export function tfRecord(data: Uint8Array): Buffer {
  const header = Buffer.alloc(12);
  header.writeBigUInt64LE(BigInt(data.length), 0);
  header.writeUInt32LE(maskedCrc32c(header.subarray(0, 8)), 8);
  const footer = Buffer.alloc(4);
  footer.writeUInt32LE(maskedCrc32c(data), 0);
  return Buffer.concat([header, Buffer.from(data), footer]);
}

/** A scalar or a run option as TensorBoard shows it. */
export type LogValue = number | string | boolean;

/**
 * Writes one run's logs into `logDir`: a TensorBoard event file
 * (`events.out.tfevents.<seconds>.<host>.<pid>`) and `metrics.jsonl` (one JSON object per record).
 * Records are appended as they come, so a run cut short keeps what it logged. @internal
 */
export class RunLog {
  readonly eventsFile: string;
  readonly metricsFile: string;
  #events: number;
  #metrics: number;

  constructor(logDir: string) {
    fs.mkdirSync(logDir, { recursive: true });
    const now = Date.now() / 1000;
    this.eventsFile = path.join(logDir, `events.out.tfevents.${Math.floor(now)}.${os.hostname()}.${process.pid}`);
    this.metricsFile = path.join(logDir, 'metrics.jsonl');
    this.#events = fs.openSync(this.eventsFile, 'w');
    this.#metrics = fs.openSync(this.metricsFile, 'a');
    this.#write({ wallTime: now, step: 0, fileVersion: 'brain.Event:2' });
  }

  #write(event: Record<string, unknown>): void {
    const { Event } = eventTypes();
    fs.writeSync(this.#events, tfRecord(Event.encode(Event.create(event)).finish()));
  }

  /** Scalars at `step` (tag → value), one event; the same as one metrics.jsonl line. */
  scalars(step: number, values: Record<string, number>, kind: string): void {
    const wallTime = Date.now() / 1000;
    const finite = Object.entries(values).filter(([, v]) => typeof v === 'number' && Number.isFinite(v));
    this.#write({ wallTime, step, summary: { value: finite.map(([tag, simpleValue]) => ({ tag, simpleValue })) } });
    fs.writeSync(this.#metrics, `${JSON.stringify({ kind, step, wallTime, ...Object.fromEntries(finite) })}\n`);
  }

  /** The run's options as TensorBoard hparams (the HParams dashboard's session start). */
  hparams(options: Record<string, LogValue>): void {
    const { HParamsPluginData } = eventTypes();
    const hparams = Object.fromEntries(Object.entries(options).map(([k, v]) =>
      [k, typeof v === 'number' ? { numberValue: v } : typeof v === 'boolean' ? { boolValue: v } : { stringValue: v }]));
    const wallTime = Date.now() / 1000;
    const content = HParamsPluginData.encode(HParamsPluginData.create({ version: 0, sessionStartInfo: { hparams, startTimeSecs: wallTime } })).finish();
    this.#write({ wallTime, step: 0, summary: { value: [{ tag: '_hparams_/session_start_info', metadata: { pluginData: { pluginName: 'hparams', content } } }] } });
    fs.writeSync(this.#metrics, `${JSON.stringify({ kind: 'hparams', wallTime, ...options })}\n`);
  }

  /** Flushes and closes both files. */
  close(): void {
    for (const fd of [this.#events, this.#metrics]) {
      fs.fsyncSync(fd);
      fs.closeSync(fd);
    }
  }
}

/** What fit reports, as the log's scalars. @internal */
export function logFitEvent(log: RunLog, kind: 'batch' | 'epoch', logs: BatchLogs | EpochLogs): void {
  if (kind === 'batch') {
    const b = logs as BatchLogs;
    const step = b.batches > 0 ? (b.epoch - 1) * b.batches + b.batch : b.batch;
    log.scalars(step, { 'batch/loss': b.loss, 'batch/accuracy': b.accuracy, 'batch/lr': b.lr, 'batch/images_per_second': b.imagesPerSecond }, 'batch');
    return;
  }
  const e = logs as EpochLogs;
  log.scalars(e.epoch, {
    'epoch/loss': e.loss, 'epoch/accuracy': e.accuracy,
    ...(e.valLoss !== null ? { 'epoch/val_loss': e.valLoss } : {}),
    ...(e.valAccuracy !== null ? { 'epoch/val_accuracy': e.valAccuracy } : {}),
    ...(e.emaValLoss !== null ? { 'epoch/ema_val_loss': e.emaValLoss } : {}),
    ...(e.emaValAccuracy !== null ? { 'epoch/ema_val_accuracy': e.emaValAccuracy } : {}),
    'epoch/lr': e.lr, 'epoch/seconds': e.seconds, 'epoch/images_per_second': e.imagesPerSecond, 'epoch/data_wait_share': e.dataWaitShare,
  }, 'epoch');
}
