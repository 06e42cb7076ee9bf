/** The one wording of a failed bind, for the gRPC port and the side door alike. */
import type { ListenAddress } from '../../shared/config.ts';
import { LarderError } from '../../shared/errors.ts';

/** Why a server could not listen, as `--listen 127.0.0.1:8980: address already in use`. */
export function bindError(flag: string, listen: ListenAddress, err: Error): LarderError {
  const host = listen.host.includes(':') ? `[${listen.host}]` : listen.host;
  // grpc-js wraps the socket's error in its own message; the code is in the text either way.
  const code = /\b(EADDRINUSE|EADDRNOTAVAIL|EACCES)\b/.exec(
    `${(err as NodeJS.ErrnoException).code} ${err.message}`,
  )?.[1];
  const reason = code === undefined ? err.message : BIND_FAILURES[code as keyof typeof BIND_FAILURES];
  return new LarderError('invalid_argument', `${flag} ${host}:${listen.port}: ${reason}`);
}

const BIND_FAILURES = {
  EADDRINUSE: 'address already in use',
  EADDRNOTAVAIL: 'no such address on this machine',
  EACCES: 'permission denied',
};
