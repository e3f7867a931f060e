/**
 * Trace-once, run-many: a traced function exported to ONNX (onnx.ts) and opened as an onnxruntime session
 * (runtime.ts). Kept apart from runtime.ts so that code which only runs ONNX bytes does not pull in the
 * exporter and its protobuf library.
 */
import { WEBGPU_EXPORT, toOnnx, type OnnxExportOptions } from './onnx.ts';
import { CompiledFunction, type OrtModule, type RuntimeOptions } from './runtime.ts';
import type { Tensor } from './tensor.ts';

/** Export `outputs` to ONNX (in the form WebGPU needs when it runs there: WEBGPU_EXPORT) and open a session for it. */
export async function compile(
  ort: OrtModule,
  outputs: Record<string, Tensor>,
  opts: RuntimeOptions & OnnxExportOptions = {},
): Promise<CompiledFunction> {
  const { bytes, info } = toOnnx(outputs, opts.executionProvider === 'webgpu' ? { ...WEBGPU_EXPORT, ...opts } : opts);
  return CompiledFunction.fromOnnx(ort, bytes, info, opts);
}
