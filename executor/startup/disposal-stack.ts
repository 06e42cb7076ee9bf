/**
 * What a start-up opened, each with how to close it again. A step registers its undo as soon as it has opened
 * something; if a later step fails, dispose() closes what the earlier ones opened, last first; shutdown is the same
 * dispose(). (Node's AsyncDisposableStack does this too, from Node 24 on; larder supports Node 20.)
 */
export class DisposalStack {
  private readonly undos: Array<() => unknown> = [];
  private disposing: Promise<void> | null = null;

  /** Registers how to undo a step that has just opened something. */
  defer(undo: () => unknown): void {
    if (this.disposing !== null) throw new Error('DisposalStack: a step was added after dispose()');
    this.undos.push(undo);
  }

  /** `value`, with `close(value)` registered to undo it. */
  use<T>(value: T, close: (value: T) => unknown): T {
    this.defer(() => close(value));
    return value;
  }

  /**
   * Runs every undo, last registered first, each awaited; one that fails does not stop the others, and the first
   * failure is thrown once all have run. Later calls wait for the same run.
   */
  dispose(): Promise<void> {
    this.disposing ??= this.undoAll();
    return this.disposing;
  }

  private async undoAll(): Promise<void> {
    const failures: unknown[] = [];
    for (let undo = this.undos.pop(); undo !== undefined; undo = this.undos.pop()) {
      try {
        await undo();
      } catch (err) {
        failures.push(err);
      }
    }
    if (failures.length > 0) throw failures[0];
  }
}

/** `fn`, run once however often it is called: every call gets the first call's promise. */
export function once<T>(fn: () => Promise<T>): () => Promise<T> {
  let result: Promise<T> | null = null;
  return () => {
    result ??= fn();
    return result;
  };
}
