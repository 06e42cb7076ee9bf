// Readiness for systemd units of larder's servers (ExecStartPost=): exits 0 once the address the service
// listens on accepts TCP connections, 1 after 60 s. With Type=exec, systemd holds units ordered after this one
// (and `systemctl start`) until then: the same guarantee as Type=notify, without sd_notify, which Node cannot
// send (it has no AF_UNIX datagram sockets). Usage: node wait-ready.mjs edge|executor (reads LARDER_LISTEN or
// LARDER_EXECUTOR_LISTEN, with larder's defaults).
import { connect } from 'node:net';

const role = process.argv[2];
const defaults = { edge: ['LARDER_LISTEN', '127.0.0.1:8080'], executor: ['LARDER_EXECUTOR_LISTEN', '127.0.0.1:8980'] };
if (!(role in defaults)) {
  console.error('usage: wait-ready.mjs edge|executor');
  process.exit(2);
}
const [variable, fallback] = defaults[role];
const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(process.env[variable] || fallback);
if (!match) {
  console.error(`wait-ready: cannot read ${variable}`);
  process.exit(2);
}
const wildcard = ['', '0.0.0.0', '::'];
const host = wildcard.includes(match[1] ?? match[2]) ? '127.0.0.1' : (match[1] ?? match[2]);
const port = Number(match[3]);
const deadline = Date.now() + 60_000;

function attempt() {
  const socket = connect({ host, port });
  socket.once('connect', () => {
    socket.destroy();
    process.exit(0);
  });
  socket.once('error', () => {
    socket.destroy();
    if (Date.now() > deadline) {
      console.error(`wait-ready: nothing listens on ${host}:${port} after 60 s`);
      process.exit(1);
    }
    setTimeout(attempt, 200);
  });
}
attempt();
