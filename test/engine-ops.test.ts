/**
 * The op registry is complete: every primitive has its four parts (shape rule, VJP, reference
 * implementation, ONNX lowering) and the tables hold nothing else. The numeric check of each part,
 * op by op, is test/engine-onnx.test.ts (which also checks that it reaches every primitive).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PRIMITIVES } from '../src/engine/graph.ts';
import { interpRules } from '../src/engine/ops/interp.ts';
import { lowerRules } from '../src/engine/ops/lower.ts';
import { shapeRules } from '../src/engine/ops/shape.ts';
import { vjpRules } from '../src/engine/ops/vjp.ts';

test('every primitive has a shape rule, a VJP, a reference implementation and an ONNX lowering, and the tables hold nothing else', () => {
  assert.equal(new Set(PRIMITIVES).size, PRIMITIVES.length, 'PRIMITIVES lists an op twice');
  const tables: Record<string, Record<string, unknown>> = { shapeRules, vjpRules, interpRules, lowerRules };
  for (const [name, table] of Object.entries(tables)) {
    const missing = PRIMITIVES.filter((op) => typeof table[op] !== 'function');
    assert.deepEqual(missing, [], `${name} lacks ${missing.join(', ')}`);
    const extra = Object.keys(table).filter((k) => !(PRIMITIVES as readonly string[]).includes(k));
    assert.deepEqual(extra, [], `${name} has entries for ops that are not primitives: ${extra.join(', ')}`);
  }
});
