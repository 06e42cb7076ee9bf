/** The `larder` command: one subcommand per role. */
import { EDGE_OPTIONS, EXECUTOR_OPTIONS, optionsHelp, parseEdgeConfig, parseExecutorConfig, parseWorkerConfig, WORKER_OPTIONS } from '../shared/config.ts';
import { isLarderError } from '../shared/errors.ts';
import { startNodeEdge } from '../edge/node.ts';
import { isEdgeWorker, startEdgeProcesses } from '../edge/node-processes.ts';
import { startExecutor } from '../executor/start.ts';

const USAGE = `usage: larder <command> [options]

commands:
  edge      serve Bazel's HTTP remote cache (GET/HEAD/PUT /ac/{sha256}, /cas/{sha256})
  executor  serve REAPI v2 over gRPC: remote execution with in-process workers, and the cache
            (Capabilities, Execution, CAS, ActionCache, ByteStream, Operations, health)
  worker    a worker in its own process: takes actions from a fleet's Redis queue (--queue redis://…)
            and reads and writes blobs through a frontend's CAS (--frontend grpc://…)
  credential-helper  Bazel credential helper: get, login HOST, print-header HOST, logout HOST
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  switch (command) {
    case 'edge': {
      if (args.includes('--help') || args.includes('-h')) {
        console.log(`usage: larder edge [options]\n\n${optionsHelp(EDGE_OPTIONS, process.env)}`);
        return 0;
      }
      const config = parseEdgeConfig(args, process.env);
      // With more than one process this one only supervises (edge/node-processes.ts); its workers run this same line.
      const edge = config.processes > 1 && !isEdgeWorker() ? await startEdgeProcesses(config) : await startNodeEdge(config, { announce: !isEdgeWorker() });
      const stop = () => void edge.close().then(() => process.exit(0));
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      return -1; // keep serving
    }
    case 'executor': {
      if (args.includes('--help') || args.includes('-h')) {
        console.log(`usage: larder executor [options]\n\n${optionsHelp(EXECUTOR_OPTIONS, process.env)}`);
        return 0;
      }
      const executor = await startExecutor(parseExecutorConfig(args, process.env));
      const stop = () => void executor.close().then(() => process.exit(0));
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      return -1; // keep serving
    }
    case 'worker': {
      if (args.includes('--help') || args.includes('-h')) {
        console.log(`usage: larder worker --queue redis://HOST:PORT --frontend grpc://HOST:PORT [options]\n\n${optionsHelp(WORKER_OPTIONS, process.env)}`);
        return 0;
      }
      // Loaded on demand, like the credential helper: an edge need not load ioredis.
      const { startWorkerProcess } = await import('../executor/worker/process.ts');
      const worker = await startWorkerProcess(parseWorkerConfig(args, process.env));
      const stop = () => void worker.close().then(() => process.exit(0));
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      return -1; // keep working
    }
    case 'credential-helper': {
      // Loaded on demand: Bazel runs `get` often and waits for it, so it should not pay for the servers' imports.
      const { credentialHelper } = await import('./credential-helper/main.ts');
      return credentialHelper(args, {
        env: process.env,
        readStdin: async () => {
          let text = '';
          for await (const chunk of process.stdin) text += chunk;
          return text;
        },
        stdout: (text) => process.stdout.write(text),
        stderr: (text) => process.stderr.write(text),
      });
    }
    case undefined:
    case '--help':
    case '-h':
    case 'help':
      console.log(USAGE);
      return command === undefined ? 2 : 0;
    default:
      console.error(`larder: unknown command ${JSON.stringify(command)}\n\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (err: unknown) => {
    console.error(`larder: ${isLarderError(err) ? err.message : (err as Error).stack ?? String(err)}`);
    process.exit(isLarderError(err, 'invalid_argument') ? 2 : 1);
  },
);
