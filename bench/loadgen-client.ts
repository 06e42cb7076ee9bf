/** The orchestrator's handle on the load-generator process: start it (pinned), send commands, stop it by PID. */
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { spawnTracked, stopChild } from './proc.ts';
import type { Command, LoadResult, Reply, StreamResult } from './protocol.ts';

const ENTRY = fileURLToPath(new URL('./loadgen.ts', import.meta.url));

export class LoadGenerator {
  readonly #child: ChildProcess;
  readonly #pending = new Map<number, { resolve(value: unknown): void; reject(err: Error): void }>();
  #nextId = 0;

  private constructor(child: ChildProcess) {
    this.#child = child;
    child.on('message', (reply: Reply) => {
      const waiter = this.#pending.get(reply.id);
      if (waiter === undefined) return;
      this.#pending.delete(reply.id);
      if (reply.ok) waiter.resolve(reply.value);
      else waiter.reject(new Error(`load generator: ${reply.error}`));
    });
    child.once('exit', (code, signal) => {
      for (const waiter of this.#pending.values())
        waiter.reject(new Error(`load generator exited (code ${code}, signal ${signal})`));
      this.#pending.clear();
    });
  }

  static start(cpu: number | undefined): LoadGenerator {
    const child = spawnTracked(process.execPath, ['--import', 'tsx', ENTRY], cpu, {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    return new LoadGenerator(child);
  }

  get pid(): number {
    return this.#child.pid!;
  }

  #send(command: Command): Promise<unknown> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#child.send({ id, command });
    });
  }

  populate(url: string, size: number, count: number): Promise<number> {
    return this.#send({ op: 'populate', url, size, count }) as Promise<number>;
  }

  load(command: Omit<Extract<Command, { op: 'load' }>, 'op'>): Promise<LoadResult> {
    return this.#send({ op: 'load', ...command }) as Promise<LoadResult>;
  }

  stream(url: string, size: number, direction: 'put' | 'get'): Promise<StreamResult> {
    return this.#send({ op: 'stream', url, size, direction }) as Promise<StreamResult>;
  }

  forget(size: number): Promise<void> {
    return this.#send({ op: 'forget', size }) as Promise<void>;
  }

  async stop(): Promise<void> {
    this.#child.disconnect?.();
    await stopChild(this.#child);
  }
}
