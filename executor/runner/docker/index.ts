/**
 * The docker runner's public surface. Everything else in this folder is internal.
 *
 * - DockerRunner (kind 'docker'): registered by in-process.ts when --allow-docker is on.
 * - DockerRunner.leaseContainer(options, user, mounts?, signal?) → ContainerLease: a warm `dockerReuse`
 *   container held for a long-lived process; ContainerLease.attach({ argv, env, cwd }) → AttachedExec
 *   ({ stdin, stdout, stderr, kill(), exited }) starts one with its stdio attached (persistent workers).
 * - DockerEngine.fromHost(host): the Engine API client for `--docker-host` (unix sockets).
 */
export { DockerRunner, type DockerRunnerOptions, type ContainerLease } from './docker-runner.ts';
export { DockerEngine, EngineError } from './engine.ts';
export type { AttachedExec } from './exec.ts';
export type { DockerLimits } from './container.ts';
