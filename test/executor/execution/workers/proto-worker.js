#!/usr/bin/env node
// A protobuf persistent worker made with @bazel/worker (the library Bazel's own JS rules used): request
// arguments are `IN OUT` pairs, IN upper-cased into OUT. Found through NODE_PATH (the repository's node_modules).

const fs = require('node:fs');
const worker = require('@bazel/worker');

function build(args) {
  for (let i = 0; i + 1 < args.length; i += 2)
    fs.writeFileSync(args[i + 1], fs.readFileSync(args[i], 'utf8').toUpperCase());
  console.error(`proto worker ${process.pid}`);
  return true;
}

if (worker.runAsWorker(process.argv)) {
  worker.runWorkerLoop(build);
} else {
  const args = process.argv
    .slice(2)
    .flatMap((a) => (a.startsWith('@') ? fs.readFileSync(a.slice(1), 'utf8').split('\n').filter(Boolean) : [a]));
  process.exit(build(args) ? 0 : 1);
}
