/**
 * An action's docker runner options, checked once: which image, whether to reuse a warm container, its network
 * and user. Everything that shapes a container (not just the image) goes into the reuse pool key, together with
 * `cache-silo-key`, so two silos never share a container and an action never lands in one built differently.
 */
import { LarderError } from '../../../shared/errors.ts';
import { imageReferenceOf } from '../../reapi/image-reference.ts';

/** Who commands run as when the executor has no --run-as user (it is not root): nobody, never root. */
export const NOBODY = { uid: 65534, gid: 65534 };

export interface DockerSpec {
  /** The image reference without `docker://`. */
  image: string;
  reuse: boolean;
  network: 'none' | 'standard';
  /** `uid:gid` the command runs as. */
  user: string;
  silo: string;
}

export function parseDockerSpec(
  options: ReadonlyMap<string, string>,
  user: { uid: number; gid: number } | null,
): DockerSpec {
  const image = imageReferenceOf(options.get('container-image') ?? '');
  const network = options.get('dockerNetwork') ?? 'none';
  if (network !== 'none' && network !== 'standard')
    throw new LarderError('invalid_argument', `dockerNetwork=${network}: use none (the default) or standard`);
  if (isTrue(options.get('dockerPrivileged')))
    throw new LarderError(
      'invalid_argument',
      'dockerPrivileged=True is not supported: a privileged container is root on the executor',
    );
  // Staged inputs are hard links to the executor's shared input cache: root in a container could write through
  // them into every later action's inputs. So commands always run as the executor's unprivileged user.
  if (isTrue(options.get('dockerRunAsRoot')))
    throw new LarderError(
      'invalid_argument',
      'dockerRunAsRoot=True is not supported: actions never run as root (their inputs are shared read-only files)',
    );
  if ((options.get('dockerUser') ?? '') !== '') {
    throw new LarderError(
      'invalid_argument',
      `dockerUser=${options.get('dockerUser')} is not supported: actions run as the executor's --run-as user, who owns their directories`,
    );
  }
  const runAs = user !== null && user.uid !== 0 ? user : currentUser();
  return {
    image,
    reuse: isTrue(options.get('dockerReuse')),
    network,
    user: `${runAs.uid}:${runAs.gid}`,
    silo: options.get('cache-silo-key') ?? '',
  };
}

/** Bazel writes booleans as True/False; accept the usual spellings. */
function isTrue(value: string | undefined): boolean {
  return value !== undefined && ['true', '1', 'yes', 'on'].includes(value.toLowerCase());
}

/** Without --run-as (larder is not root), the staged directories are larder's: the container runs as larder's user. */
function currentUser(): { uid: number; gid: number } {
  const uid = process.getuid?.() ?? NOBODY.uid;
  return uid === 0 ? NOBODY : { uid, gid: process.getgid?.() ?? NOBODY.gid };
}
