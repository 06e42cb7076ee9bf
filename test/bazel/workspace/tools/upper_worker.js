#!/usr/bin/env node
// A JSON persistent worker (Bazel's worker protocol) that upper-cases files, also runnable as a one-shot tool.
// One-shot, Bazel (or a remote executor without persistent workers) passes `@FLAGFILE`, whose lines are
// `INPUT OUTPUT` pairs. With `--persistent_worker` it reads WorkRequests as concatenated JSON objects from stdin
// (Bazel 4.2.3 writes them without newlines) and answers one WorkResponse per line.
//
// For the tests and benchmarks of remote persistent workers it also takes, at start-up, `--startup-delay-ms=N`
// (a slow-starting tool: a JVM, a compiler loading itself), and, among a request's arguments, directives:
// `crash-once:PATH` (the first process to see it exits mid-request; PATH records its pid), `garbage` (writes bytes
// that are not a response), `hang` (never answers), `fail` (exit code 3), `cat:PATH` (PATH's content goes into
// the output: where am I running?) and `descriptors` (the numbers of the worker's open descriptors, into the output).

const fs = require('node:fs');
// Which process answered, for tests that count worker processes: pids say nothing across sandboxes, each of
// which has a PID namespace of its own.
const processId = require('node:crypto').randomUUID();

const delayArg = process.argv.find((a) => a.startsWith('--startup-delay-ms='));
const delay = delayArg === undefined ? 0 : Number(delayArg.split('=')[1]);
const startedAt = Date.now();
while (Date.now() - startedAt < delay);

function work(args) {
  const files = [];
  let extra = '';
  for (const arg of args) {
    if (arg.startsWith('--')) continue;
    if (arg.startsWith('@')) files.push(...fs.readFileSync(arg.slice(1), 'utf8').split('\n').filter(Boolean));
    else files.push(arg);
  }
  const pairs = [];
  for (const arg of files) {
    if (arg === 'garbage' || arg === 'hang') return { [arg]: true };
    if (arg === 'fail') return { exitCode: 3, output: 'failing on purpose\n' };
    if (arg.startsWith('cat:')) extra += fs.readFileSync(arg.slice(4), 'utf8');
    else if (arg === 'descriptors') extra += `descriptors: ${fs.readdirSync('/proc/self/fd').join(' ')}\n`;
    else if (arg.startsWith('crash-once:')) {
      const marker = arg.slice('crash-once:'.length);
      if (!fs.existsSync(marker)) {
        fs.writeFileSync(marker, String(process.pid));
        process.exit(7);
      }
    } else pairs.push(arg);
  }
  for (let i = 0; i + 1 < pairs.length; i += 2)
    fs.writeFileSync(pairs[i + 1], fs.readFileSync(pairs[i], 'utf8').toUpperCase());
  return { exitCode: 0, output: `upper-cased ${pairs.length >> 1} file(s) in process ${processId}\n${extra}` };
}

if (!process.argv.includes('--persistent_worker')) {
  const result = work(process.argv.slice(2));
  process.stderr.write(result.output || '');
  process.exit(result.exitCode || 0);
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
    let result;
    try {
      result = work(request.arguments || []);
    } catch (err) {
      result = { exitCode: 1, output: String(err?.message) };
    }
    if (result.hang) continue;
    if (result.garbage) {
      process.stdout.write('this is not json\n');
      continue;
    }
    process.stdout.write(
      `${JSON.stringify({ exitCode: result.exitCode, output: result.output, requestId: request.requestId || 0 })}\n`,
    );
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
