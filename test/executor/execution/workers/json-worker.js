#!/usr/bin/env node
// A JSON persistent worker for the tests, with misbehaviours on request. Start-up flags: --startup-delay-ms=N
// (a slow tool), --silo-tag=X (printed). Request arguments are `IN OUT` pairs (IN is upper-cased into OUT) and
// directives: `crash-once:PATH` (the first process to see it exits mid-request; PATH records that it did),
// `garbage` (writes bytes that are not a response), `hang` (never answers), `fail` (exit code 3), `cat:PATH`
// (PATH's content goes into the response's output: where am I running?).
'use strict';
const fs = require('fs');

const delay = Number((process.argv.find((a) => a.startsWith('--startup-delay-ms=')) || '=0').split('=')[1]);
const started = Date.now();
while (Date.now() - started < delay); // a tool that takes this long to start (JIT, class loading…)

function work(args) {
  const files = [];
  let extra = '';
  for (const arg of args) {
    if (arg.startsWith('cat:')) {
      extra += fs.readFileSync(arg.slice(4), 'utf8');
      continue;
    }
    if (arg === 'garbage') return { garbage: true };
    if (arg === 'hang') return { hang: true };
    if (arg === 'fail') return { exitCode: 3, output: 'failing on purpose\n' };
    if (arg.startsWith('crash-once:')) {
      const marker = arg.slice('crash-once:'.length);
      if (!fs.existsSync(marker)) {
        fs.writeFileSync(marker, String(process.pid));
        process.exit(7);
      }
      continue;
    }
    files.push(arg);
  }
  for (let i = 0; i + 1 < files.length; i += 2) fs.writeFileSync(files[i + 1], fs.readFileSync(files[i], 'utf8').toUpperCase());
  return { exitCode: 0, output: `pid ${process.pid}\n${extra}` };
}

if (!process.argv.includes('--persistent_worker')) {
  const args = process.argv.slice(2).flatMap((a) => (a.startsWith('@') ? fs.readFileSync(a.slice(1), 'utf8').split('\n').filter(Boolean) : [a]));
  const result = work(args.filter((a) => !a.startsWith('--')));
  process.stderr.write(result.output || '');
  process.exit(result.exitCode || 0);
}

process.stderr.write(`json worker ${process.pid} up\n`);
let buffer = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => {
  buffer += chunk;
  for (;;) {
    const end = endOfObject(buffer);
    if (end < 0) return;
    const request = JSON.parse(buffer.slice(0, end));
    buffer = buffer.slice(end).replace(/^\s+/, '');
    const result = work(request.arguments || []);
    if (result.hang) continue;
    if (result.garbage) {
      process.stdout.write('this is not json\n');
      continue;
    }
    process.stdout.write(JSON.stringify({ exitCode: result.exitCode, output: result.output, requestId: request.requestId || 0 }) + '\n');
  }
});

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
