/**
 * Platform properties, split once at the boundary into what routes an action and what configures its run.
 *
 * - **Routing constraints** (`OSFamily`, `Arch`, any label such as `Pool=gpu`): an action goes only to a worker
 *   that offers every one of them. An action no registered worker could ever satisfy fails at once.
 * - **Runner options** (RUNNER_OPTIONS): how to run it (container image, network, persistent-worker key, silo).
 *   They never route, so an unknown `dockerNetwork` value is the runner's error to report, not a queue that
 *   nobody drains. The one routing fact they imply is the runner kind (a container image needs a worker with
 *   the docker runner).
 *
 * Bazel 4 puts the platform on both Command and Action; newer clients on the Action only. The Action's wins
 * when it has any properties (it is the one covered by the action digest).
 */
import { arch, platform as osPlatform } from 'node:os';
import { LarderError } from '../../shared/errors.ts';
import { RUNNER_OPTIONS } from '../../shared/platform-properties.ts';
import type { Platform } from '../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { imageReferenceOf } from './image-reference.ts';

export type RunnerKind = 'local' | 'docker';

export interface ActionPlatform {
  /** name → every value the action asks for (REAPI allows a name more than once). */
  readonly constraints: ReadonlyMap<string, readonly string[]>;
  /** Runner options, last value wins. */
  readonly options: ReadonlyMap<string, string>;
  /** The runner the options call for. */
  readonly runner: RunnerKind;
}

/** What a worker offers: every value it satisfies per property name, and the runners it has. */
export interface WorkerPlatform {
  readonly properties: ReadonlyMap<string, ReadonlySet<string>>;
  readonly runners: ReadonlySet<RunnerKind>;
}

const MAX_PROPERTIES = 64;
const MAX_TEXT = 1024;

export function splitPlatform(
  actionPlatform: Platform | undefined,
  commandPlatform: Platform | undefined,
): ActionPlatform {
  const chosen =
    actionPlatform !== undefined && actionPlatform.properties.length > 0 ? actionPlatform : commandPlatform;
  const properties = chosen?.properties ?? [];
  if (properties.length > MAX_PROPERTIES)
    throw new LarderError(
      'invalid_argument',
      `the platform has ${properties.length} properties; at most ${MAX_PROPERTIES} are accepted`,
    );
  const constraints = new Map<string, string[]>();
  const options = new Map<string, string>();
  for (const { name, value } of properties) {
    if (name === '' || name.length > MAX_TEXT || value.length > MAX_TEXT) {
      throw new LarderError('invalid_argument', `invalid platform property ${JSON.stringify(name.slice(0, 80))}`);
    }
    if (RUNNER_OPTIONS.has(name)) options.set(name, value);
    else {
      const routed = canonicalName(name);
      constraints.set(routed, [...(constraints.get(routed) ?? []), normalise(routed, value)]);
    }
  }
  const image = options.get('container-image') ?? '';
  if (image !== '') imageReferenceOf(image); // INVALID_ARGUMENT before anything is queued
  return { constraints, options, runner: image === '' ? 'local' : 'docker' };
}

/**
 * The platform an action runs with on a worker whose pool has a default image (`--default-container-image`): one
 * that names no container-image gets that image, and so the docker runner and everything it does (reuse, persistent
 * workers in containers, limits). One that names an image keeps it, and one whose input root is its whole file
 * system (`filesystem-root=input`) brings its own root, so it stays on the local runner. Such a worker still offers
 * the `local` runner kind in its platform: it takes the actions that name no image, which is what that kind routes.
 */
export function withDefaultImage(platform: ActionPlatform, defaultImage: string | null): ActionPlatform {
  if (defaultImage === null || (platform.options.get('container-image') ?? '') !== '') return platform;
  if (platform.options.get('filesystem-root') === 'input') return platform;
  return {
    constraints: platform.constraints,
    options: new Map([...platform.options, ['container-image', defaultImage]]),
    runner: 'docker',
  };
}

/**
 * The properties of `action` that `worker` does not offer, as `name=value` (empty when it matches). A missing
 * runner is named as the option that needs it.
 */
export function unmatchedProperties(action: ActionPlatform, worker: WorkerPlatform): string[] {
  const unmatched: string[] = [];
  for (const [name, values] of action.constraints) {
    const offered = worker.properties.get(name);
    for (const value of values) if (offered === undefined || !offered.has(value)) unmatched.push(`${name}=${value}`);
  }
  if (!worker.runners.has(action.runner))
    unmatched.push(
      `container-image=${action.options.get('container-image') ?? ''} (needs the ${action.runner} runner)`,
    );
  return unmatched;
}

/**
 * The platform of a worker on this host: OSFamily and Arch from the running process (so an arm64 Node reports
 * arm64 whatever the labels say), plus configured labels, which may add values or, for tests and unusual hosts,
 * name others.
 */
export function workerPlatform(
  labels: ReadonlyMap<string, readonly string[]>,
  runners: readonly RunnerKind[],
): WorkerPlatform {
  const properties = new Map<string, Set<string>>([
    ['OSFamily', new Set([normalise('OSFamily', osPlatform())])],
    ['Arch', new Set([normalise('Arch', arch())])],
  ]);
  for (const [name, values] of labels) {
    // A configured OSFamily/Arch replaces the detected one rather than adding to it: one pool is one platform.
    const set =
      name === 'OSFamily' || name === 'Arch' ? new Set<string>() : (properties.get(name) ?? new Set<string>());
    for (const value of values) set.add(normalise(name, value));
    properties.set(name, set);
  }
  return { properties, runners: new Set(runners) };
}

/** A readable one-line form for logs and messages: `Arch=amd64, OSFamily=linux, Pool=gpu`. */
export function describeWorkerPlatform(worker: WorkerPlatform): string {
  return [...worker.properties]
    .flatMap(([name, values]) => [...values].map((v) => `${name}=${v}`))
    .sort()
    .join(', ');
}

/**
 * What a queue of actions is labelled by: their routing constraints as `Arch=arm64, OSFamily=linux`, with
 * `runner=docker` for actions that name a container image; `any` for actions that ask for nothing.
 */
export function describeActionPlatform(action: Pick<ActionPlatform, 'constraints' | 'runner'>): string {
  const named = [...action.constraints].flatMap(([name, values]) => values.map((v) => `${name}=${v}`)).sort();
  if (action.runner !== 'local') named.push(`runner=${action.runner}`);
  return named.length === 0 ? 'any' : named.join(', ');
}

// OS and architecture names differ between ecosystems (Bazel's platforms say `Linux`, Go and Docker `amd64`,
// uname `x86_64`, Node `x64`): compare them in one spelling.
const ARCH_ALIASES: Record<string, string> = {
  x86_64: 'amd64',
  'x86-64': 'amd64', // BuildStream's ISA spelling
  x64: 'amd64',
  amd64: 'amd64',
  aarch64: 'arm64',
  arm64: 'arm64',
};

/** BuildStream and other buildbox clients call the architecture `ISA`: the same constraint as `Arch`. */
function canonicalName(name: string): string {
  return name === 'ISA' ? 'Arch' : name;
}

function normalise(name: string, value: string): string {
  if (name === 'OSFamily') return value.toLowerCase();
  if (name === 'Arch') return ARCH_ALIASES[value.toLowerCase()] ?? value.toLowerCase();
  return value;
}
