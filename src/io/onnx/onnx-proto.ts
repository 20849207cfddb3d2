// The ONNX messages we write (ModelProto, GraphProto, NodeProto, TensorProto, ValueInfoProto) and a reader
// that decodes the same subset back, so tests and tools can inspect any ONNX file's interface and weights.
import { int64, ProtoError, type ProtoField, ProtoWriter, readFields, readInts } from './protobuf.js';

/** TensorProto.DataType values used here. */
export const OnnxDataType = { FLOAT: 1, INT64: 7, BOOL: 9 } as const;

/** AttributeProto.AttributeType values used here. */
const AttrType = { FLOAT: 1, INT: 2, TENSOR: 4, INTS: 7 } as const;

/** A dimension: a fixed size or a named symbolic one (e.g. "b"). */
export type Dim = number | string;

export interface ValueInfo {
  name: string;
  elemType: number;
  dims: Dim[];
}

export type AttrValue =
  | { kind: 'int'; value: number }
  | { kind: 'float'; value: number }
  | { kind: 'ints'; value: number[] }
  | { kind: 'tensor'; value: OnnxTensor };

export interface OnnxNode {
  op: string;
  inputs: string[];
  outputs: string[];
  name: string;
  attrs: Record<string, AttrValue>;
}

export interface OnnxTensor {
  name: string;
  dataType: number;
  dims: number[];
  /** Little-endian element bytes (raw_data). */
  raw: Uint8Array;
}

export interface OnnxGraph {
  name: string;
  nodes: OnnxNode[];
  initializers: OnnxTensor[];
  inputs: ValueInfo[];
  outputs: ValueInfo[];
}

export interface OnnxModel {
  irVersion: number;
  producerName: string;
  producerVersion: string;
  /** Default-domain opset version. */
  opset: number;
  graph: OnnxGraph;
}

function tensorProto(t: OnnxTensor): ProtoWriter {
  const w = new ProtoWriter();
  if (t.dims.length > 0) w.packedInts(1, t.dims);
  return w.int(2, t.dataType).string(8, t.name).bytes(9, t.raw);
}

function attributeProto(name: string, a: AttrValue): ProtoWriter {
  const w = new ProtoWriter().string(1, name);
  if (a.kind === 'int') w.int(3, a.value).int(20, AttrType.INT);
  else if (a.kind === 'float') w.float(2, a.value).int(20, AttrType.FLOAT);
  else if (a.kind === 'ints') w.packedInts(8, a.value).int(20, AttrType.INTS);
  else w.message(5, tensorProto(a.value)).int(20, AttrType.TENSOR);
  return w;
}

function valueInfoProto(v: ValueInfo): ProtoWriter {
  const shape = new ProtoWriter();
  for (const d of v.dims) {
    shape.message(1, typeof d === 'number' ? new ProtoWriter().int(1, d) : new ProtoWriter().string(2, d));
  }
  const tensorType = new ProtoWriter().int(1, v.elemType).message(2, shape);
  return new ProtoWriter().string(1, v.name).message(2, new ProtoWriter().message(1, tensorType));
}

/** Serializes a model (weights are referenced, not copied, until the single final join). */
export function encodeModel(m: OnnxModel): Uint8Array {
  const g = new ProtoWriter();
  for (const n of m.graph.nodes) {
    const nw = new ProtoWriter();
    for (const i of n.inputs) nw.string(1, i);
    for (const o of n.outputs) nw.string(2, o);
    nw.string(3, n.name).string(4, n.op);
    for (const [k, a] of Object.entries(n.attrs)) nw.message(5, attributeProto(k, a));
    g.message(1, nw);
  }
  g.string(2, m.graph.name);
  for (const t of m.graph.initializers) g.message(5, tensorProto(t));
  for (const v of m.graph.inputs) g.message(11, valueInfoProto(v));
  for (const v of m.graph.outputs) g.message(12, valueInfoProto(v));
  return new ProtoWriter()
    .int(1, m.irVersion)
    .string(2, m.producerName)
    .string(3, m.producerVersion)
    .message(7, g)
    .message(8, new ProtoWriter().string(1, '').int(2, m.opset))
    .toBytes();
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function str(f: ProtoField): string {
  if (!f.bytes) throw new ProtoError(`field ${f.field} should be a string`);
  return utf8.decode(f.bytes);
}

function sub(f: ProtoField): ProtoField[] {
  if (!f.bytes) throw new ProtoError(`field ${f.field} should be a message`);
  return readFields(f.bytes);
}

function num(f: ProtoField): number {
  if (f.varint === undefined) throw new ProtoError(`field ${f.field} should be a varint`);
  return int64(f.varint);
}

function decodeTensor(fields: ProtoField[]): OnnxTensor {
  const t: OnnxTensor = { name: '', dataType: 0, dims: readInts(fields, 1), raw: new Uint8Array(0) };
  for (const f of fields) {
    if (f.field === 2) t.dataType = num(f);
    else if (f.field === 8) t.name = str(f);
    else if (f.field === 9 && f.bytes) t.raw = f.bytes;
  }
  return t;
}

function decodeAttr(fields: ProtoField[]): [string, AttrValue] {
  let name = '';
  let type = 0;
  for (const f of fields) {
    if (f.field === 1) name = str(f);
    else if (f.field === 20) type = num(f);
  }
  const one = (field: number) => fields.find((f) => f.field === field);
  if (type === AttrType.INT) return [name, { kind: 'int', value: num(one(3)!) }];
  if (type === AttrType.FLOAT) {
    const b = one(2)?.bytes;
    if (!b) throw new ProtoError(`attribute ${name}: no float`);
    return [name, { kind: 'float', value: new DataView(b.buffer, b.byteOffset, 4).getFloat32(0, true) }];
  }
  if (type === AttrType.INTS) return [name, { kind: 'ints', value: readInts(fields, 8) }];
  if (type === AttrType.TENSOR) return [name, { kind: 'tensor', value: decodeTensor(sub(one(5)!)) }];
  throw new ProtoError(`attribute ${name}: type ${type} is not read by this decoder`);
}

function decodeValueInfo(fields: ProtoField[]): ValueInfo {
  const v: ValueInfo = { name: '', elemType: 0, dims: [] };
  for (const f of fields) {
    if (f.field === 1) v.name = str(f);
    else if (f.field === 2) {
      const tensorType = sub(f).find((t) => t.field === 1);
      if (!tensorType) continue;
      for (const tf of sub(tensorType)) {
        if (tf.field === 1) v.elemType = num(tf);
        else if (tf.field === 2) {
          for (const d of sub(tf).filter((x) => x.field === 1)) {
            const df = sub(d);
            const value = df.find((x) => x.field === 1);
            const param = df.find((x) => x.field === 2);
            v.dims.push(value ? num(value) : param ? str(param) : '?');
          }
        }
      }
    }
  }
  return v;
}

/** Decodes the ModelProto subset above; throws ProtoError naming what is malformed. */
export function decodeModel(buf: Uint8Array): OnnxModel {
  const m: OnnxModel = {
    irVersion: 0,
    producerName: '',
    producerVersion: '',
    opset: 0,
    graph: { name: '', nodes: [], initializers: [], inputs: [], outputs: [] },
  };
  let sawGraph = false;
  for (const f of readFields(buf, 'ModelProto')) {
    if (f.field === 1) m.irVersion = num(f);
    else if (f.field === 2) m.producerName = str(f);
    else if (f.field === 3) m.producerVersion = str(f);
    else if (f.field === 8) {
      const o = sub(f);
      const domain = o.find((x) => x.field === 1);
      const version = o.find((x) => x.field === 2);
      if ((!domain || str(domain) === '') && version) m.opset = num(version);
    } else if (f.field === 7) {
      sawGraph = true;
      const g = m.graph;
      for (const gf of sub(f)) {
        if (gf.field === 1) {
          const n: OnnxNode = { op: '', inputs: [], outputs: [], name: '', attrs: {} };
          for (const nf of sub(gf)) {
            if (nf.field === 1) n.inputs.push(str(nf));
            else if (nf.field === 2) n.outputs.push(str(nf));
            else if (nf.field === 3) n.name = str(nf);
            else if (nf.field === 4) n.op = str(nf);
            else if (nf.field === 5) {
              const [k, a] = decodeAttr(sub(nf));
              n.attrs[k] = a;
            }
          }
          g.nodes.push(n);
        } else if (gf.field === 2) g.name = str(gf);
        else if (gf.field === 5) g.initializers.push(decodeTensor(sub(gf)));
        else if (gf.field === 11) g.inputs.push(decodeValueInfo(sub(gf)));
        else if (gf.field === 12) g.outputs.push(decodeValueInfo(sub(gf)));
      }
    }
  }
  if (!sawGraph) throw new ProtoError('ModelProto has no graph');
  return m;
}
