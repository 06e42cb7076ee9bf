// container-image values against Docker's reference grammar: what real builds name passes, and anything that
// could steer an Engine API path elsewhere (or that the engine would refuse anyway) is INVALID_ARGUMENT.
import { describe, expect, it } from 'vitest';
import { imageReferenceOf, referenceProblem } from '../../../executor/reapi/image-reference.ts';
import { larderCode } from '../../helpers/errors.ts';

const HEX64 = 'a'.repeat(64);

describe('Docker image references', () => {
  it('accepts the names builds use', () => {
    for (const name of [
      'busybox',
      'busybox:1.36',
      'library/busybox:latest',
      'larder-test/busybox:1',
      'gcr.io/my-project/build-image:2024-05',
      'localhost:5000/team/image',
      'localhost:5000/team/image:v1.2_3-rc',
      'registry.example.com:443/a/b/c',
      'Registry.Example.COM/a',
      '[::1]:5000/image:tag',
      'my_image__x.y-z--w',
      `busybox@sha256:${HEX64}`,
      `busybox:1@sha256:${HEX64}`,
      `ghcr.io/org/tool@sha512:${'b'.repeat(128)}`,
    ]) {
      expect(referenceProblem(name), name).toBeNull();
    }
  });

  it('refuses paths, odd characters, bad tags and digests, and names too long', () => {
    for (const name of [
      '',
      '../../containers/json',
      'busybox/../../x',
      './busybox',
      '/busybox',
      'busybox/',
      'a//b',
      'Busybox',
      'team/Image',
      'busy box',
      'busybox?x=1',
      'busybox#x',
      'busybox%2f..',
      'busybox:',
      'busybox:-tag',
      'busybox:bad/tag',
      `busybox:${'t'.repeat(129)}`,
      'busybox@sha256:abc',
      'busybox@',
      '_busybox',
      'busybox_',
      'busy___box',
      'host:port/image',
      `${'a'.repeat(256)}`,
    ]) {
      expect(referenceProblem(name), name).not.toBeNull();
    }
  });

  it('container-image must be docker:// and a reference; the error names the value', () => {
    expect(imageReferenceOf('docker://busybox:1')).toBe('busybox:1');
    for (const value of ['busybox', 'docker://', 'docker://../../containers/json', 'oci://busybox']) {
      let thrown: unknown;
      try {
        imageReferenceOf(value);
      } catch (err) {
        thrown = err;
      }
      expect(larderCode(thrown), value).toBe('invalid_argument');
      expect((thrown as Error).message).toContain(`container-image ${JSON.stringify(value)}`);
    }
  });
});
