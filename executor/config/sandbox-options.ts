/**
 * Who actions run as and what keeps them in: one user for all (--run-as) or a uid of its own per slot
 * (--run-as-uids), the namespace sandbox, the network, and each local action's cgroup limits. `larder executor` and
 * `larder worker` take the same rows (execution-options.ts).
 */
import { LarderError } from '../../shared/errors.ts';
import { type OptionRow, parseCount, parseSwitch } from '../../shared/options.ts';
import { parseSize } from '../../shared/size.ts';

export interface SandboxConfig {
  /** One user every action runs as when the server runs as root (`--run-as`); '' : a uid of its own per slot. */
  runAs: string;
  /** The uids actions and persistent workers run as, one per slot, when the server runs as root and no runAs. */
  runAsUids: { first: number; last: number } | null;
  /** Every local action and persistent worker in a namespace sandbox of its own (bubblewrap); off only by choice. */
  sandbox: boolean;
  /** Whether an action may ask for the network (`network=on`); without it, sandboxed actions have none. */
  allowNetwork: boolean;
  /** Memory of one local action (its cgroup, all its processes); 0: unlimited. */
  actionMemoryBytes: number;
  /** Processes (tasks) of one local action at once; 0: unlimited. */
  actionPids: number;
}

export const SANDBOX_OPTIONS: readonly OptionRow[] = [
  {
    flag: 'run-as',
    env: 'LARDER_RUN_AS',
    help: 'one user every action runs as when larder runs as root (default: a uid of its own per slot, --run-as-uids)',
    default: () => '',
  },
  {
    flag: 'run-as-uids',
    env: 'LARDER_RUN_AS_UIDS',
    help: 'FIRST-LAST: the uids actions and persistent workers run as when larder runs as root, one per slot',
    default: () => (isRoot() ? DEFAULT_RUN_AS_UIDS : ''),
  },
  {
    flag: 'sandbox',
    env: 'LARDER_SANDBOX',
    help: 'on: every local action in namespaces of its own (bubblewrap); off: unisolated, only if you trust every client',
    default: () => 'on',
  },
  {
    flag: 'allow-network',
    env: 'LARDER_ALLOW_NETWORK',
    help: 'let actions that ask for it (platform property network=on) use the host network; none have it otherwise',
    default: () => 'off',
    boolean: true,
  },
  {
    flag: 'action-memory',
    env: 'LARDER_ACTION_MEMORY',
    help: 'memory of each local action, all its processes together (its cgroup); past it it is OOM-killed (0: unlimited)',
    default: () => '4GiB',
  },
  {
    flag: 'action-pids',
    env: 'LARDER_ACTION_PIDS',
    help: 'processes each local action may have at once (its cgroup; 0: unlimited)',
    default: () => '4096',
  },
];

/** --run-as and --run-as-uids: as root, actions run as someone else, never as root. */
export function parseRunAs(values: Record<string, string>): Pick<SandboxConfig, 'runAs' | 'runAsUids'> {
  const runAs = values['run-as']!;
  if (isRoot() && (runAs === 'root' || runAs === '0')) {
    throw new LarderError(
      'invalid_argument',
      '--run-as: larder runs as root, and actions never do; name an unprivileged user',
    );
  }
  const runAsUids = runAs === '' ? parseUidRange(values['run-as-uids']!) : null;
  if (isRoot() && runAs === '' && runAsUids === null) {
    throw new LarderError(
      'invalid_argument',
      `larder runs as root, and actions never do: give --run-as-uids FIRST-LAST (default ${DEFAULT_RUN_AS_UIDS}) or --run-as USER`,
    );
  }
  return { runAs, runAsUids };
}

/** The sandbox switch, the network, and each local action's memory and processes. */
export function parseSandboxLimits(
  values: Record<string, string>,
): Pick<SandboxConfig, 'sandbox' | 'allowNetwork' | 'actionMemoryBytes' | 'actionPids'> {
  return {
    sandbox: parseSwitch('sandbox', values.sandbox!),
    allowNetwork: parseSwitch('allow-network', values['allow-network']!),
    actionMemoryBytes: parseSize(values['action-memory']!),
    actionPids: /^\d+$/.test(values['action-pids']!.trim())
      ? Number(values['action-pids'])
      : parseCount('action-pids', values['action-pids']!, 0),
  };
}

/**
 * The default uids of actions: far above any user database's range (and above the 100000-165535 subordinate
 * ranges container tools hand out), so no real user or container mapping shares one.
 */
const DEFAULT_RUN_AS_UIDS = '1900000000-1900001023';

function parseUidRange(text: string): { first: number; last: number } | null {
  if (text.trim() === '') return null;
  const match = /^\s*(\d+)\s*-\s*(\d+)\s*$/.exec(text);
  const first = Number(match?.[1]);
  const last = Number(match?.[2]);
  if (match === null || first < 1 || last < first || last > 0xfffffffe) {
    throw new LarderError(
      'invalid_argument',
      `--run-as-uids takes FIRST-LAST, two uids above 0 (say ${DEFAULT_RUN_AS_UIDS}), not ${JSON.stringify(text)}`,
    );
  }
  return { first, last };
}

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}
