#!/usr/bin/env node
// A JSON persistent worker (Bazel's worker protocol) that upper-cases files, also runnable as a one-shot
// tool. One-shot, Bazel (or a remote executor without persistent workers) passes `@FLAGFILE`, whose lines
// are `INPUT OUTPUT` pairs. With `--persistent_worker` it reads WorkRequests as concatenated JSON objects
// from stdin (Bazel 4.2.3 writes them without newlines) and answers one WorkResponse per line.
'use strict';
const fs = require('fs');

// `--startup-delay-ms=N` makes it a slow-starting tool (a JVM, a compiler loading itself), for the tests and the
// benchmark of persistent workers.
const delayArg = process.argv.find((a) => a.startsWith('--startup-delay-ms='));
const delay = delayArg === undefined ? 0 : Number(delayArg.split('=')[1]);
const startedAt = Date.now();
while (Date.now() - startedAt < delay);

function work(args) {
  const lines = [];
  for (const arg of args) {
    if (arg.startsWith('--')) continue;
    if (arg.startsWith('@')) lines.push(...fs.readFileSync(arg.slice(1), 'utf8').split('\n').filter(Boolean));
    else lines.push(arg);
  }
  for (let i = 0; i + 1 < lines.length; i += 2) {
    fs.writeFileSync(lines[i + 1], fs.readFileSync(lines[i], 'utf8').toUpperCase());
  }
  return `upper-cased ${lines.length / 2} file(s)`;
}

if (!process.argv.includes('--persistent_worker')) {
  console.error(work(process.argv.slice(2)));
  process.exit(0);
}

let buffer = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => {
  buffer += chunk;
  for (;;) {
    const end = endOfObject(buffer);
    if (end < 0) return;
    const request = JSON.parse(buffer.slice(0, end));
    buffer = buffer.slice(end).replace(/^\s+/, '');
    let response;
    try {
      response = { exitCode: 0, output: work(request.arguments || []), requestId: request.requestId || 0 };
    } catch (err) {
      response = { exitCode: 1, output: String(err && err.message), requestId: request.requestId || 0 };
    }
    process.stdout.write(JSON.stringify(response) + '\n');
  }
});

// The index just past the first complete JSON object in `text`, or -1 while it is incomplete.
function endOfObject(text) {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '{') depth++;
    else if (c === '}' && --depth === 0) return i + 1;
  }
  return -1;
}
