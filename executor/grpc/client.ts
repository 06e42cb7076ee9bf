/**
 * A typed promise client for a generated service, over the same adaptation as the server (adapt.ts).
 * For tests, the benchmark and `larder worker`'s calls to its frontend (worker/frontend.ts): unary methods return
 * a promise, server-streaming ones an async iterable, client-streaming ones take an (async) iterable of requests.
 * Failures reject with grpc-js's ServiceError, whose `code` is the gRPC status.
 */
import type { DescMessage, DescService, MessageInitShape, MessageShape } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { serviceDefinition } from './adapt.ts';

export interface CallOptions {
  metadata?: grpc.Metadata;
  /** Milliseconds from now. */
  timeoutMs?: number;
}

type Req<M> = M extends { input: infer I extends DescMessage } ? MessageInitShape<I> : never;
type Res<M> = M extends { output: infer O extends DescMessage } ? MessageShape<O> : never;

type ClientMethod<M> = M extends { methodKind: 'unary' }
  ? (request: Req<M>, options?: CallOptions) => Promise<Res<M>>
  : M extends { methodKind: 'server_streaming' }
    ? (request: Req<M>, options?: CallOptions) => AsyncIterable<Res<M>>
    : M extends { methodKind: 'client_streaming' }
      ? (requests: Iterable<Req<M>> | AsyncIterable<Req<M>>, options?: CallOptions) => Promise<Res<M>>
      : never;

export type ServiceClient<S extends Pick<DescService, 'method'>> = {
  [K in keyof S['method']]: ClientMethod<S['method'][K]>;
} & {
  close(): void;
};

/** Channel options a client of larder wants: room for batch calls up to a few MiB above gRPC's 4 MiB default. */
export const CLIENT_CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.max_receive_message_length': 64 * 1024 * 1024,
  'grpc.max_send_message_length': 64 * 1024 * 1024,
  // HTTP/2's default 64 KiB receive window caps a stream at one window per round trip; large reads need more.
  'grpc-node.flow_control_window': 16 * 1024 * 1024,
};

export function createClient<S extends DescService>(
  service: S,
  address: string,
  credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure(),
  channelOptions: grpc.ChannelOptions = CLIENT_CHANNEL_OPTIONS,
): ServiceClient<S> {
  const Constructor = grpc.makeGenericClientConstructor(serviceDefinition(service, 'client'), service.name);
  const raw = new Constructor(address, credentials, channelOptions) as unknown as Record<
    string,
    (...args: unknown[]) => unknown
  > &
    grpc.Client;
  const client: Record<string, unknown> = { close: () => raw.close() };
  for (const method of service.methods) {
    const call = raw[method.localName]!.bind(raw);
    switch (method.methodKind) {
      case 'unary':
        client[method.localName] = (request: unknown, options: CallOptions = {}) =>
          new Promise((resolve, reject) => {
            call(request, metadataOf(options), callOptionsOf(options), (err: Error | null, reply: unknown) =>
              err ? reject(err) : resolve(reply),
            );
          });
        break;
      case 'server_streaming':
        client[method.localName] = (request: unknown, options: CallOptions = {}) =>
          call(request, metadataOf(options), callOptionsOf(options)) as AsyncIterable<unknown>;
        break;
      case 'client_streaming':
        client[method.localName] = (requests: Iterable<unknown> | AsyncIterable<unknown>, options: CallOptions = {}) =>
          new Promise((resolve, reject) => {
            const stream = call(metadataOf(options), callOptionsOf(options), (err: Error | null, reply: unknown) =>
              err ? reject(err) : resolve(reply),
            ) as grpc.ClientWritableStream<unknown>;
            writeAll(stream, requests).catch((err) => {
              stream.cancel();
              reject(err);
            });
          });
        break;
    }
  }
  return client as ServiceClient<S>;
}

async function writeAll(
  stream: grpc.ClientWritableStream<unknown>,
  requests: Iterable<unknown> | AsyncIterable<unknown>,
): Promise<void> {
  for await (const request of requests) {
    if (!stream.write(request)) await drainedOrDone(stream);
  }
  stream.end();
}

/** Resolves when the stream can take more, or has ended; removes both listeners either way. */
function drainedOrDone(stream: grpc.ClientWritableStream<unknown>): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      stream.off('drain', done);
      stream.off('status', done);
      resolve();
    };
    stream.on('drain', done);
    stream.on('status', done);
  });
}

function metadataOf(options: CallOptions): grpc.Metadata {
  return options.metadata ?? new grpc.Metadata();
}

function callOptionsOf(options: CallOptions): grpc.CallOptions {
  return options.timeoutMs === undefined ? {} : { deadline: Date.now() + options.timeoutMs };
}
