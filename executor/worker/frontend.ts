/**
 * A `larder worker`'s connection to a frontend's REAPI services: the CAS, ByteStream and ActionCache clients
 * on one channel, with TLS when the URL says grpcs:// and the credentials the cache accepts (an
 * `Authorization` value, `Bearer …` or `Basic …`, read from a file so it never shows in `ps` and can be
 * rotated: the file is read again when it changes).
 */
import * as grpc from '@grpc/grpc-js';
import { readFileSync, statSync } from 'node:fs';
import { LarderError } from '../../shared/errors.ts';
import {
  ActionCache,
  Capabilities,
  ContentAddressableStorage,
} from '../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';
import { ByteStream } from '../../shared/proto/gen/google/bytestream/bytestream_pb.ts';
import { createClient, type ServiceClient } from '../grpc/client.ts';

export interface FrontendOptions {
  /** grpc://HOST:PORT or grpcs://HOST:PORT. */
  url: string;
  /** PEM file of the CA that signed the frontend's certificate ('' : the system's roots). */
  caPath: string;
  /** File holding the Authorization header value ('' : no credentials, for a loopback or anonymous frontend). */
  credentialsPath: string;
}

export interface Frontend {
  readonly url: string;
  readonly cas: ServiceClient<typeof ContentAddressableStorage>;
  readonly bytestream: ServiceClient<typeof ByteStream>;
  readonly ac: ServiceClient<typeof ActionCache>;
  readonly capabilities: ServiceClient<typeof Capabilities>;
  /** Call metadata carrying the current credentials. */
  metadata(): grpc.Metadata;
  close(): void;
}

export function openFrontend(options: FrontendOptions): Frontend {
  const match = /^(grpcs?):\/\/([^/]+)\/?$/.exec(options.url);
  if (match === null)
    throw new LarderError(
      'invalid_argument',
      `--frontend must be grpc://HOST:PORT or grpcs://HOST:PORT, not ${JSON.stringify(options.url)}`,
    );
  const [, scheme, address] = match;
  if (scheme === 'grpc' && options.caPath !== '')
    throw new LarderError('invalid_argument', '--frontend-ca is for a grpcs:// frontend');
  const credentials =
    scheme === 'grpcs'
      ? grpc.credentials.createSsl(options.caPath === '' ? null : readFile(options.caPath, '--frontend-ca'))
      : grpc.credentials.createInsecure();
  const authorization = options.credentialsPath === '' ? null : credentialsFile(options.credentialsPath);
  const clients = {
    cas: createClient(ContentAddressableStorage, address!, credentials),
    bytestream: createClient(ByteStream, address!, credentials),
    ac: createClient(ActionCache, address!, credentials),
    capabilities: createClient(Capabilities, address!, credentials),
  };
  return {
    url: options.url,
    ...clients,
    metadata() {
      const metadata = new grpc.Metadata();
      if (authorization !== null) metadata.set('authorization', authorization());
      return metadata;
    },
    close: () => {
      for (const client of Object.values(clients)) client.close();
    },
  };
}

/** The file's trimmed content, read again whenever its modification time changes. */
function credentialsFile(path: string): () => string {
  let mtime = -1;
  let value = '';
  const load = () => {
    const now = statSync(path).mtimeMs;
    if (now !== mtime) {
      value = readFile(path, '--frontend-credentials').toString('utf8').trim();
      if (!/^(Bearer|Basic) \S+$/.test(value))
        throw new LarderError(
          'invalid_argument',
          `--frontend-credentials ${path} must hold "Bearer TOKEN" or "Basic BASE64"`,
        );
      mtime = now;
    }
    return value;
  };
  load();
  return load;
}

function readFile(path: string, flag: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new LarderError('invalid_argument', `${flag} ${path}: ${(err as Error).message}`);
  }
}
