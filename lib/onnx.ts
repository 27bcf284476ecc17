/**
 * ONNX export: a DenseNet's inference graph (evaluation mode: batch norm with its running
 * statistics) as standard ONNX operators, written with the ONNX protobuf schema (onnx-proto).
 * The graph follows torchvision's DenseNet (features.*, classifier), so names in the file match
 * the state dict's keys.
 */
import { onnx } from 'onnx-proto';
import type { DenseNetConfig } from './config';
import type { InputSpec } from './input-spec';
import { METADATA_INPUT_KEY } from './input-spec';
import { METADATA_CLASSES_KEY, METADATA_CONFIG_KEY, METADATA_VERSION_KEY, PACKAGE_VERSION } from './package-info';
import type { Tensor } from './tensor';
import { boolean, knownOptions, positiveInt } from './validate';

/** Options of `model.exportOnnx`. */
export interface OnnxExportOptions {
  /** The ONNX operator set, 13 to 21. Default 17. */
  opset?: number;
  /** A symbolic batch dimension (any batch size at run time). Default true; false fixes it to 1. */
  dynamicBatch?: boolean;
  /**
   * Fold each batch norm that follows a convolution (the bottlenecks' second, the ImageNet
   * stem's) into that convolution's weights and bias. Default true; false keeps every
   * BatchNormalization node.
   */
  foldBatchNorm?: boolean;
}

/** The oldest and newest operator sets the export writes. */
export const ONNX_OPSETS = [13, 21] as const;

/** Batch norm's epsilon in every DenseNet layer (BatchNorm2d's default, as torchvision). */
const BN_EPS = 1e-5;

const FLOAT = onnx.TensorProto.DataType.FLOAT;
const { INT, INTS, FLOAT: FLOAT_ATTR } = onnx.AttributeProto.AttributeType;

/** Validated export options with defaults. */
export function resolveOnnxOptions(options: unknown): Required<OnnxExportOptions> {
  const o = knownOptions<OnnxExportOptions>(options, ['opset', 'dynamicBatch', 'foldBatchNorm'], 'exportOnnx()');
  const opset = positiveInt(o.opset ?? 17, 'options.opset');
  if (opset < ONNX_OPSETS[0] || opset > ONNX_OPSETS[1]) throw new RangeError(`Expected options.opset to be between ${ONNX_OPSETS[0]} and ${ONNX_OPSETS[1]} but received ${opset}`);
  return { opset, dynamicBatch: boolean(o.dynamicBatch ?? true, 'options.dynamicBatch'), foldBatchNorm: boolean(o.foldBatchNorm ?? true, 'options.foldBatchNorm') };
}

/** The IR version a reader needs for an operator set (onnx/docs/Versioning.md). */
function irVersionFor(opset: number): number {
  if (opset <= 18) return 8;
  if (opset <= 20) return 9;
  return 10;
}

type Attr = onnx.IAttributeProto;
const ints = (name: string, values: number[]): Attr => ({ name, type: INTS, ints: values });
const int = (name: string, value: number): Attr => ({ name, type: INT, i: value });
const float = (name: string, value: number): Attr => ({ name, type: FLOAT_ATTR, f: value });

/** Builds the graph: nodes, initializers, and fresh value names. */
class GraphBuilder {
  readonly nodes: onnx.INodeProto[] = [];
  readonly initializers: onnx.ITensorProto[] = [];
  #count = 0;

  constructor(private readonly weights: Map<string, { data: Float32Array; shape: number[] }>) {}

  /** A state-dict entry, by key. */
  weight(key: string): { data: Float32Array; shape: number[] } {
    const w = this.weights.get(key);
    if (!w) throw new Error(`exportOnnx(): the model has no '${key}'`);
    return w;
  }

  /** Adds an initializer; returns its name. */
  constant(name: string, data: Float32Array, shape: number[]): string {
    this.initializers.push({ name, dims: shape, dataType: FLOAT, rawData: Buffer.from(data.buffer, data.byteOffset, data.byteLength) });
    return name;
  }

  /** Adds a node; returns its output's name. */
  node(op: string, inputs: string[], name: string, attributes: Attr[] = []): string {
    const output = `${name}_out${this.#count++}`;
    this.nodes.push({ opType: op, input: inputs, output: [output], name, attribute: attributes });
    return output;
  }

  /** BatchNormalization with the layer's parameters and running statistics. */
  batchNorm(x: string, prefix: string): string {
    const p = (k: string): string => this.constant(`${prefix}.${k}`, this.weight(`${prefix}.${k}`).data, this.weight(`${prefix}.${k}`).shape);
    return this.node('BatchNormalization', [x, p('weight'), p('bias'), p('running_mean'), p('running_var')], prefix, [float('epsilon', BN_EPS)]);
  }

  /**
   * A convolution (no bias in DenseNet), followed by the batch norm `foldNorm` when given: folded
   * into the convolution (weight scaled per output channel, a bias added) when `fold`, else as its
   * own node.
   */
  conv(x: string, prefix: string, stride: number, pad: number, foldNorm?: string, fold = false): string {
    const w = this.weight(`${prefix}.weight`);
    const [out, , kh, kw] = w.shape;
    const attrs = [ints('kernel_shape', [kh, kw]), ints('strides', [stride, stride]), ints('pads', [pad, pad, pad, pad])];
    if (foldNorm === undefined || !fold) {
      const y = this.node('Conv', [x, this.constant(`${prefix}.weight`, w.data, w.shape)], prefix, attrs);
      return foldNorm === undefined ? y : this.batchNorm(y, foldNorm);
    }
    const gamma = this.weight(`${foldNorm}.weight`).data, beta = this.weight(`${foldNorm}.bias`).data;
    const mean = this.weight(`${foldNorm}.running_mean`).data, variance = this.weight(`${foldNorm}.running_var`).data;
    const per = w.data.length / out;
    const weight = new Float32Array(w.data.length);
    const bias = new Float32Array(out);
    for (let o = 0; o < out; o++) {
      const scale = gamma[o] / Math.sqrt(variance[o] + BN_EPS);
      for (let i = 0; i < per; i++) weight[o * per + i] = w.data[o * per + i] * scale;
      bias[o] = beta[o] - mean[o] * scale;
    }
    return this.node('Conv', [x, this.constant(`${prefix}.weight+${foldNorm}`, weight, w.shape), this.constant(`${prefix}.bias+${foldNorm}`, bias, [out])], prefix, attrs);
  }
}

/** What the export reads of a model. */
export interface ExportSource {
  readonly config: DenseNetConfig;
  readonly classes: readonly string[] | undefined;
  readonly input: InputSpec | undefined;
  stateDict(): Record<string, Tensor>;
}

/** The model's inference graph as an ONNX ModelProto, encoded. */
export function onnxBytes(model: ExportSource, options: Required<OnnxExportOptions>): Uint8Array {
  const c = model.config;
  const sd = model.stateDict();
  const weights = new Map<string, { data: Float32Array; shape: number[] }>();
  try {
    for (const [k, t] of Object.entries(sd)) {
      if (k.endsWith('num_batches_tracked')) continue;
      weights.set(k, { data: Float32Array.from(t.toArray() as Float32Array), shape: t.shape });
    }
  } finally {
    for (const t of Object.values(sd)) t.dispose();
  }
  const g = new GraphBuilder(weights);
  const fold = options.foldBatchNorm;
  let x = 'input';
  if (c.stem === 'imagenet') {
    x = g.conv(x, 'features.conv0', 2, 3, 'features.norm0', fold);
    x = g.node('Relu', [x], 'features.relu0');
    x = g.node('MaxPool', [x], 'features.pool0', [ints('kernel_shape', [3, 3]), ints('strides', [2, 2]), ints('pads', [1, 1, 1, 1])]);
  } else {
    x = g.conv(x, 'features.conv0', 1, 1);
  }
  c.blockConfig.forEach((layers, b) => {
    const features = [x];
    for (let l = 0; l < layers; l++) {
      const prefix = `features.denseblock${b + 1}.denselayer${l + 1}`;
      const input = features.length === 1 ? features[0] : g.node('Concat', [...features], `${prefix}.concat`, [int('axis', 1)]);
      let y = g.node('Relu', [g.batchNorm(input, `${prefix}.norm1`)], `${prefix}.relu1`);
      if (c.bnSize > 0) {
        y = g.conv(y, `${prefix}.conv1`, 1, 0, `${prefix}.norm2`, fold);
        y = g.node('Relu', [y], `${prefix}.relu2`);
        y = g.conv(y, `${prefix}.conv2`, 1, 1);
      } else {
        y = g.conv(y, `${prefix}.conv1`, 1, 1);
      }
      features.push(y);
    }
    x = g.node('Concat', features, `features.denseblock${b + 1}.concat`, [int('axis', 1)]);
    if (b < c.blockConfig.length - 1) {
      const prefix = `features.transition${b + 1}`;
      x = g.node('Relu', [g.batchNorm(x, `${prefix}.norm`)], `${prefix}.relu`);
      // Pooling before the 1x1 convolution: the same result (both are linear per pixel and per
      // window) on a quarter of the pixels, as densetorch computes it.
      x = g.node('AveragePool', [x], `${prefix}.pool`, [ints('kernel_shape', [2, 2]), ints('strides', [2, 2])]);
      x = g.conv(x, `${prefix}.conv`, 1, 0);
    }
  });
  x = g.node('Relu', [g.batchNorm(x, 'features.norm5')], 'features.relu5');
  x = g.node('GlobalAveragePool', [x], 'avgpool');
  x = g.node('Flatten', [x], 'flatten', [int('axis', 1)]);
  const w = g.weight('classifier.weight'), bias = g.weight('classifier.bias');
  g.nodes.push({ opType: 'Gemm', input: [x, g.constant('classifier.weight', w.data, w.shape), g.constant('classifier.bias', bias.data, bias.shape)], output: ['logits'], name: 'classifier', attribute: [int('transB', 1)] });

  const spec = model.input;
  const dim = (value: number | undefined, param: string): onnx.TensorShapeProto.IDimension => (value === undefined ? { dimParam: param } : { dimValue: value });
  const inputShape = [options.dynamicBatch ? { dimParam: 'batch' } : { dimValue: 1 }, { dimValue: c.inChannels }, dim(spec?.height, 'height'), dim(spec?.width, 'width')];
  const outputShape = [options.dynamicBatch ? { dimParam: 'batch' } : { dimValue: 1 }, { dimValue: c.numClasses }];
  const metadata: onnx.IStringStringEntryProto[] = [
    { key: METADATA_CONFIG_KEY, value: JSON.stringify(c) },
    { key: METADATA_VERSION_KEY, value: PACKAGE_VERSION },
    ...(model.classes ? [{ key: METADATA_CLASSES_KEY, value: JSON.stringify(model.classes) }] : []),
    ...(spec ? [{ key: METADATA_INPUT_KEY, value: JSON.stringify(spec) }] : []),
  ];
  const proto = onnx.ModelProto.create({
    irVersion: irVersionFor(options.opset),
    opsetImport: [{ domain: '', version: options.opset }],
    producerName: 'densetorch',
    producerVersion: PACKAGE_VERSION,
    docString: 'DenseNet inference graph (evaluation mode) exported by densetorch',
    graph: {
      name: 'densenet',
      node: g.nodes,
      initializer: g.initializers,
      input: [{ name: 'input', type: { tensorType: { elemType: FLOAT, shape: { dim: inputShape } } } }],
      output: [{ name: 'logits', type: { tensorType: { elemType: FLOAT, shape: { dim: outputShape } } } }],
    },
    metadataProps: metadata,
  });
  return onnx.ModelProto.encode(proto).finish();
}
