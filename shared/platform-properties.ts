/**
 * Platform property names larder gives a meaning to, and the `--platform` label syntax: shared by the config
 * parser and the scheduler (executor/reapi/platform.ts), which splits an action's properties into
 * routing constraints and these runner options.
 */
import { LarderError } from './errors.ts';

/** Properties that configure a run and never route it (see the README's table). */
export const RUNNER_OPTIONS: ReadonlySet<string> = new Set([
  'container-image',
  'dockerReuse',
  'dockerNetwork',
  'dockerPrivileged',
  'dockerRunAsRoot',
  'dockerUser',
  'persistentWorkerKey',
  'persistentWorkerProtocol',
  'cache-silo-key',
  'network',
  'filesystem-root',
]);

/** `--platform key=value,key=value`: labels a worker offers (a key may repeat). */
export function parsePlatformLabels(text: string): Map<string, string[]> {
  const labels = new Map<string, string[]>();
  for (const part of text
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '')) {
    const eq = part.indexOf('=');
    if (eq <= 0)
      throw new LarderError(
        'invalid_argument',
        `--platform takes key=value pairs separated by commas, not ${JSON.stringify(part)}`,
      );
    const name = part.slice(0, eq).trim();
    if (RUNNER_OPTIONS.has(name))
      throw new LarderError('invalid_argument', `--platform ${name}: a runner option, not a property a worker offers`);
    labels.set(name, [...(labels.get(name) ?? []), part.slice(eq + 1).trim()]);
  }
  return labels;
}
