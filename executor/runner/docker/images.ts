/**
 * Makes sure an image is on the engine before its first action: inspect, and pull only when absent. One
 * preparation per image however many actions ask at once (parallel first uses stampeded the engine at other
 * build farms); a success is remembered, a failure is shared by the actions waiting on it and then forgotten, so a
 * later action tries again. Preparation runs before the action's timeout starts.
 */
import { EngineError, type DockerEngine } from './engine.ts';

export class ImageNotAvailable extends Error {
  override readonly name = 'ImageNotAvailable';
}

export class Images {
  private readonly ready = new Map<string, Promise<void>>();

  constructor(private readonly engine: DockerEngine) {}

  prepare(image: string): Promise<void> {
    let pending = this.ready.get(image);
    if (pending === undefined) {
      pending = this.fetch(image);
      this.ready.set(image, pending);
      pending.catch(() => this.ready.delete(image));
    }
    return pending;
  }

  /** The image vanished (someone removed it): the next action prepares it again. */
  forget(image: string): void {
    this.ready.delete(image);
  }

  private async fetch(image: string): Promise<void> {
    if (await this.present(image)) return;
    const { repo, tag } = splitReference(image);
    try {
      await this.engine.progress(
        'POST',
        `/images/create?fromImage=${encodeURIComponent(repo)}&tag=${encodeURIComponent(tag)}`,
      );
    } catch (err) {
      if (err instanceof EngineError && err.status !== 0)
        throw new ImageNotAvailable(
          `the image ${image} is not on this executor's Docker engine and cannot be pulled: ${err.message}`,
        );
      throw err;
    }
    if (!(await this.present(image)))
      throw new ImageNotAvailable(`the image ${image} is not on this executor's Docker engine after a pull`);
  }

  private async present(image: string): Promise<boolean> {
    try {
      await this.engine.call('GET', `/images/${encodeURIComponent(image)}/json`);
      return true;
    } catch (err) {
      if (err instanceof EngineError && err.status === 404) return false;
      throw err;
    }
  }
}

/** `repo[:tag]` or `repo@sha256:…` → the pull's fromImage and tag (a port in the registry host is not a tag). */
function splitReference(image: string): { repo: string; tag: string } {
  const at = image.indexOf('@');
  if (at >= 0) return { repo: image.slice(0, at), tag: image.slice(at + 1) };
  const colon = image.lastIndexOf(':');
  if (colon > image.lastIndexOf('/')) return { repo: image.slice(0, colon), tag: image.slice(colon + 1) };
  return { repo: image, tag: 'latest' };
}
