/**
 * Connection limits of the Node edge. Each connection holds a file descriptor, and a request reading or
 * writing a large blob holds a second one; past the process's open-file limit (often 1024) every open()
 * fails with EMFILE. Capping connections below that limit keeps the descriptors for the requests already
 * accepted. Node cannot raise its own RLIMIT_NOFILE (that needs setrlimit(2), which Node does not expose):
 * raise it where the process starts (`ulimit -n`, systemd `LimitNOFILE=`), and the cap follows.
 */
import { readFileSync } from 'node:fs';

/** Descriptors kept for everything that is not a connection: the store's index walk, logs, TLS files, … */
const RESERVED = 64;

/** The cap for `--max-connections auto`: half the descriptors left after the reserve; null when unknown. */
export function autoMaxConnections(limitsFile = '/proc/self/limits'): number | null {
  const soft = openFileLimit(limitsFile);
  if (soft === null) return null;
  return Math.max(16, Math.floor((soft - RESERVED) / 2));
}

/** The soft RLIMIT_NOFILE (Linux /proc), or null where it cannot be read or is unlimited. */
function openFileLimit(limitsFile: string): number | null {
  let text: string;
  try {
    text = readFileSync(limitsFile, 'utf8');
  } catch {
    return null;
  }
  const match = /^Max open files\s+(\d+|unlimited)\s/m.exec(text);
  return match && match[1] !== 'unlimited' ? Number(match[1]) : null;
}
