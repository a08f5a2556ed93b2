// Runs the original face-api networks (@vladmandic/face-api, pure-JS CPU backend of TensorFlow.js)
// on the inputs that scripts/faceapi_reference.py prepared, and writes their outputs as JSON.
//
//   node reference.js <face-api weights folder> <work folder>
//
// <work folder>/cases.json lists the cases; <work folder>/inputs.bin holds the input images as
// little-endian float32 HWC arrays on the 0-255 scale (what tf.browser.fromPixels would give).
// The outputs go to <work folder>/outputs.json. See scripts/faceapi_reference.py for the procedure.
'use strict';

const fs = require('fs');
const path = require('path');
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');

const { tf } = faceapi;

async function main() {
  const [weightsDir, workDir] = process.argv.slice(2);
  if (!weightsDir || !workDir) {
    process.stderr.write('usage: node reference.js <face-api weights folder> <work folder>\n');
    process.exit(2);
  }
  await tf.setBackend('cpu');
  await tf.ready();
  if (tf.getBackend() !== 'cpu') throw new Error(`expected the cpu backend, got ${tf.getBackend()}`);

  const recognition = faceapi.nets.faceRecognitionNet;
  const expression = faceapi.nets.faceExpressionNet;
  await recognition.loadFromDisk(weightsDir);
  await expression.loadFromDisk(weightsDir);

  const spec = JSON.parse(fs.readFileSync(path.join(workDir, 'cases.json'), 'utf8'));
  const bin = fs.readFileSync(path.join(workDir, 'inputs.bin'));
  const floats = new Float32Array(bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength));
  const tensorOf = (input) => {
    const [h, w, c] = input.shape;
    const start = input.offset / 4;
    return tf.tensor3d(floats.slice(start, start + h * w * c), [h, w, c], 'float32');
  };

  const results = {};
  for (const item of spec.cases) {
    const tensors = item.inputs.map(tensorOf);
    const arg = item.call === 'batch' ? tensors : tensors[0];
    const result = {};
    if (item.net === 'recognition') {
      const out = await recognition.computeFaceDescriptor(arg);
      const rows = item.call === 'batch' ? out : [out];
      result.output = rows.map((row) => Array.from(row));
    } else {
      const probs = await expression.forward(arg);
      result.output = await probs.array();
      probs.dispose();
      const netInput = await faceapi.toNetInput(arg);
      const logits = expression.runNet(netInput);
      result.logits = await logits.array();
      logits.dispose();
      const named = await expression.predictExpressions(arg);
      result.expressions = (item.call === 'batch' ? named : [named]).map((e) => ({ ...e }));
    }
    tensors.forEach((t) => t.dispose());
    results[item.id] = result;
  }

  const meta = {
    node: process.version,
    backend: tf.getBackend(),
    tfjs: tf.version.tfjs,
    faceapi: faceapi.version,
  };
  fs.writeFileSync(path.join(workDir, 'outputs.json'), JSON.stringify({ meta, results }));
}

main().catch((err) => {
  process.stderr.write(`reference.js: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
