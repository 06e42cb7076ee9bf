/**
 * How larder's containers are built, in one place: no network unless asked, the action's user, memory and pids
 * limits (swap included in the memory limit, so a runaway is OOM-killed rather than swapping the host), no
 * capabilities, no privilege gain, and no engine-side log (output is read from the attached stream, bounded;
 * a json-file log would store a runaway's output on the engine's disk without limit).
 */
import { EngineError, type DockerEngine } from './engine.ts';
import type { DockerSpec } from './spec.ts';

export interface DockerLimits {
  /** Bytes of memory (and swap) a container may use; 0: no limit. */
  readonly memoryBytes: number;
  /** Processes a container may have at once; 0: no limit. */
  readonly pids: number;
}

/**
 * Who a warm container's init and its `sleep infinity` run as: root of the container, with no capabilities (all
 * dropped, no privilege gain) and a read-only root file system, so it can do nothing an action could not. What
 * matters is that it is never an action's uid (actions never run as root): an action can then neither ptrace it,
 * nor write its memory through /proc, nor signal it, nor read its /proc/PID/root or cwd. With the action's own
 * uid, an action replaced the sleep's code with a shell loop under the same PID, which the leftover check (PIDs
 * only) could not see, and rewrote the next action's outputs. Commands always run in it as their own user (exec.ts
 * refuses an exec without one, which would otherwise run as this root).
 */
export const WARM_INIT_USER = '0:0';

/** Labelled so an operator (and the tests) can find larder's containers: `docker ps --filter label=larder`. */
export const LABEL = 'larder';
/**
 * Names the work folder's owner (worker/work-root.ts): a run started after a crash removes the containers with its
 * own owner, and only those (another executor's on the same engine have another).
 */
export const OWNER_LABEL = `${LABEL}.owner`;

export interface ContainerConfig {
  spec: DockerSpec;
  limits: DockerLimits;
  /** Host paths mounted at the same path, read-write, and other mounts as `host:container`. */
  binds: string[];
  entrypoint: readonly string[];
  cmd: readonly string[];
  env: Readonly<Record<string, string>>;
  workingDir: string;
  /**
   * Warm containers: an init as PID 1 reaps what exec'd commands orphan; the root file system is read-only; the
   * init runs as WARM_INIT_USER, commands as spec.user through exec.
   */
  warm: boolean;
  /** A one-shot container's stdio is attached before it starts. */
  attach: boolean;
  role: 'action' | 'warm';
  /** The owner id the container is labelled with (OWNER_LABEL). */
  owner: string;
}

export async function createContainer(engine: DockerEngine, config: ContainerConfig): Promise<string> {
  const { spec, limits } = config;
  const body = {
    Image: spec.image,
    Entrypoint: config.entrypoint,
    Cmd: config.cmd,
    Env: Object.entries(config.env).map(([name, value]) => `${name}=${value}`),
    WorkingDir: config.workingDir,
    User: config.warm ? WARM_INIT_USER : spec.user,
    AttachStdout: config.attach,
    AttachStderr: config.attach,
    Tty: false,
    OpenStdin: false,
    Labels: { [LABEL]: config.role, [`${LABEL}.silo`]: spec.silo, [OWNER_LABEL]: config.owner },
    HostConfig: {
      Binds: config.binds,
      // `standard` is the engine's default bridge; an engine without one (--bridge=none) refuses such actions.
      NetworkMode: spec.network === 'none' ? 'none' : 'bridge',
      Memory: limits.memoryBytes,
      MemorySwap: limits.memoryBytes === 0 ? 0 : limits.memoryBytes,
      PidsLimit: limits.pids === 0 ? -1 : limits.pids,
      CapDrop: ['ALL'],
      SecurityOpt: ['no-new-privileges'],
      LogConfig: { Type: 'none', Config: {} },
      Init: config.warm,
      ReadonlyRootfs: config.warm,
    },
  };
  const created = await engine.call<{ Id: string }>('POST', '/containers/create', body);
  return created.Id;
}

/** Kills and removes a container (and its anonymous volumes); already gone is fine. */
export async function removeContainer(engine: DockerEngine, id: string): Promise<void> {
  try {
    await engine.call('DELETE', `/containers/${id}?force=1&v=1`);
  } catch (err) {
    if (err instanceof EngineError && err.status === 404) return;
    // 409 "removal already in progress": wait for it like any other.
    if (err instanceof EngineError && err.status === 409) return;
    throw err;
  }
}

/** Removes every container labelled with `owner`, running or not (a crashed run's); returns how many. */
export async function removeOwnedContainers(engine: DockerEngine, owner: string): Promise<number> {
  const filters = encodeURIComponent(JSON.stringify({ label: [`${OWNER_LABEL}=${owner}`] }));
  const list = await engine.call<Array<{ Id: string }>>('GET', `/containers/json?all=1&filters=${filters}`);
  await Promise.all(list.map((c) => removeContainer(engine, c.Id)));
  return list.length;
}

export interface ContainerState {
  pid: number;
  exitCode: number;
  oomKilled: boolean;
}

export async function inspectContainer(engine: DockerEngine, id: string): Promise<ContainerState> {
  const info = await engine.call<{ State: { Pid: number; ExitCode: number; OOMKilled: boolean } }>(
    'GET',
    `/containers/${id}/json`,
  );
  return { pid: info.State.Pid, exitCode: info.State.ExitCode, oomKilled: info.State.OOMKilled };
}
