/**
 * Opens the socket of each ioredis connection (plain TCP or TLS) and keeps an 'error' listener on it for its
 * whole life. ioredis itself listens for a socket's first 'error' only (`once`), but a socket can fail twice: a
 * TLS client whose certificate check fails destroys the socket, yet an alert already read behind the handshake
 * still surfaces as a second error (seen when close() ends the events connection mid-handshake); an SSL error
 * after the handshake leaves the socket open, so a reset that follows is a second error too. Unheard, that second
 * error is an uncaught exception that ends the process. Here it goes to the connection's 'error' event instead,
 * where it is logged like any other.
 */
import { connect as connectTcp, type Socket } from 'node:net';
import { connect as connectTls, type ConnectionOptions } from 'node:tls';
import { AbstractConnector } from 'ioredis';

/** The part of the ioredis options (handed to the connector whole, defaults filled in) that says where to connect. */
interface Address {
  host: string;
  port: number;
  family?: number;
  tls?: ConnectionOptions;
  disconnectTimeout?: number;
}

type ErrorEmitter = (type: string, err: Error) => void;

export class LastingErrorConnector extends AbstractConnector {
  private readonly address: Address;

  /** ioredis calls this with its options, whose type it leaves open. */
  constructor(options: unknown) {
    const address = options as Address;
    // ioredis always passes its disconnectTimeout (default 2 s); the fallback is for a caller that does not.
    super(address.disconnectTimeout ?? 2_000);
    this.address = address;
  }

  connect(emit: ErrorEmitter): Promise<Socket> {
    this.connecting = true;
    const { host, port, family, tls } = this.address;
    return new Promise((resolve, reject) => {
      // A tick later, as ioredis's own connector does, so a disconnect() called meanwhile opens no socket.
      process.nextTick(() => {
        // ioredis's own message for this: it does not report it while it is closing the connection itself.
        if (!this.connecting) return reject(new Error('Connection is closed.'));
        const address = { host, port, ...(family === undefined ? {} : { family }) };
        let stream: Socket;
        try {
          stream = tls === undefined ? connectTcp(address) : connectTls({ ...address, ...tls });
        } catch (err) {
          return reject(err);
        }
        let errors = 0;
        stream.on('error', (err: Error) => {
          // The first goes to ioredis's own listener (or, if the socket failed before it listened, it reads
          // firstError); each later one would otherwise go nowhere.
          if (errors++ === 0) this.firstError = err;
          else emit('error', err);
        });
        this.stream = stream;
        resolve(stream);
      });
    });
  }
}
