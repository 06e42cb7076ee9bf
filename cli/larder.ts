/**
 * The `larder` command: one subcommand per role. Each role's code is imported only when that role runs, so
 * `larder --version` and `larder credential-helper get` (which Bazel runs and waits for) load none of the servers.
 */
import packageJson from '../package.json' with { type: 'json' };
import { hideCommandLine } from '../executor/command-line.ts';
import { closeInheritedDescriptors } from '../executor/startup/inherited-descriptors.ts';
import { isLarderError } from '../shared/errors.ts';

const USAGE = `usage: larder <command> [options]

commands:
  edge      serve Bazel's HTTP remote cache (GET/HEAD/PUT /ac/{sha256}, /cas/{sha256})
  executor  serve REAPI v2 over gRPC: remote execution with in-process workers, and the cache
            (Capabilities, Execution, CAS, ActionCache, ByteStream, Operations, health)
  worker    a worker in its own process: takes actions from a fleet's Redis queue (--queue redis://…)
            and reads and writes blobs through a frontend's CAS (--frontend grpc://…)
  credential-helper  Bazel credential helper: get, login HOST, print-header HOST, logout HOST
  version   print larder's version (also --version)
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  // First of all: a password on the command line is readable by every process on the host until hidden.
  if (command === 'executor' || command === 'worker') {
    hideCommandLine(command, args);
    // Before anything is started: what larder's own parent left open must reach no action and no worker.
    closeInheritedDescriptors();
  }
  switch (command) {
    case 'edge': {
      const { EDGE_OPTIONS, parseEdgeConfig } = await import('../shared/config.ts');
      const { optionsHelp } = await import('../shared/options.ts');
      if (args.includes('--help') || args.includes('-h')) {
        console.log(`usage: larder edge [options]\n\n${optionsHelp(EDGE_OPTIONS, process.env)}`);
        return 0;
      }
      const config = parseEdgeConfig(args, process.env);
      const { startNodeEdge } = await import('../edge/node.ts');
      const { isEdgeChildProcess, startEdgeProcesses } = await import('../edge/node-processes.ts');
      // With more than one process this one only supervises (edge/node-processes.ts); its children run this same line.
      const edge =
        config.processes > 1 && !isEdgeChildProcess()
          ? await startEdgeProcesses(config)
          : await startNodeEdge(config, { announce: !isEdgeChildProcess() });
      const stop = () => void edge.close().then(() => process.exit(0));
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      return -1; // keep serving
    }
    case 'executor': {
      const { EXECUTOR_OPTIONS, parseExecutorConfig } = await import('../executor/config/executor-options.ts');
      const { optionsHelp } = await import('../shared/options.ts');
      if (args.includes('--help') || args.includes('-h')) {
        console.log(`usage: larder executor [options]\n\n${optionsHelp(EXECUTOR_OPTIONS, process.env)}`);
        return 0;
      }
      const { startExecutor } = await import('../executor/start.ts');
      const { keepHeapRoom } = await import('../executor/startup/heap-growth.ts');
      keepHeapRoom();
      const executor = await startExecutor(parseExecutorConfig(args, process.env), { commandLine: args });
      const stop = () => void executor.close().then(() => process.exit(0));
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      return -1; // keep serving
    }
    case 'worker': {
      const { WORKER_OPTIONS, parseWorkerConfig } = await import('../executor/config/worker-options.ts');
      const { optionsHelp } = await import('../shared/options.ts');
      if (args.includes('--help') || args.includes('-h')) {
        console.log(
          `usage: larder worker --queue redis://HOST:PORT --frontend grpc://HOST:PORT [options]\n\n${optionsHelp(WORKER_OPTIONS, process.env)}`,
        );
        return 0;
      }
      const { startWorkerProcess, WORKER_DRAIN_MS } = await import('../executor/start-worker.ts');
      const worker = await startWorkerProcess(parseWorkerConfig(args, process.env), { commandLine: args });
      // Drained or not, a stopped worker is gone within WORKER_DRAIN_MS: jobs it still holds then are requeued
      // when their leases expire, and the service manager need not escalate to SIGKILL.
      const stop = () => {
        const deadline = setTimeout(() => {
          console.error(`larder worker: not drained within ${WORKER_DRAIN_MS / 1000} s; exiting`);
          process.exit(1);
        }, WORKER_DRAIN_MS);
        void worker.close().then(() => {
          clearTimeout(deadline);
          process.exit(0);
        });
      };
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
    case '--version':
    case 'version':
      console.log(`larder ${packageJson.version}`);
      return 0;
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
    console.error(`larder: ${isLarderError(err) ? err.message : ((err as Error).stack ?? String(err))}`);
    process.exit(isLarderError(err, 'invalid_argument') ? 2 : 1);
  },
);
