/**
 * Serves protobuf-es service descriptors (GenService) with @grpc/grpc-js, so the generated code in
 * shared/proto/gen is the only description of the wire format: no .proto loading at run time.
 *
 * Services implement plain async functions (`ServiceHandlers`): a unary handler returns its reply, a
 * server-streaming one awaits `send` (which waits while the client is slow), a client-streaming one
 * reads an async iterable. Whatever they throw becomes a status through grpc-status.ts.
 *
 * grpc-js answers a request that fails to deserialize with INTERNAL; a malformed request is the client's
 * fault, so the deserializer here never throws: it hands over a marker that becomes INVALID_ARGUMENT.
 *
 * Authorisation happens here, once for every service: `authorize` runs before the handler is called, so a
 * refused call never decodes into a handler, never reads a message of a client stream (nothing is stored)
 * and never writes one of a server stream (nothing is sent).
 */
import {
  fromBinary,
  type DescMessage,
  type DescMethod,
  type DescService,
  type MessageInitShape,
  type MessageShape,
} from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import type { Principal } from '../../shared/auth/authenticator.ts';
import { errorForLog, LarderError } from '../../shared/errors.ts';
import type { Logger } from '../../shared/log.ts';
import { callStatus } from '../reapi/grpc-status.ts';
import { Attached } from './attached.ts';
import { batchReadResponseEncoder } from './batch-read-message.ts';
import { singleBytesEncoder } from './bytes-message.ts';
import { digestListDecoder, digestListEncoder, generic } from './digest-lists.ts';
import { repeatedRequestDecoder } from './repeated-requests.ts';
import { encodedOnce } from './reused-replies.ts';
import { callFields } from './request-metadata.ts';

export interface CallContext {
  /** "/package.Service/Method", as on the wire. */
  readonly path: string;
  readonly metadata: grpc.Metadata;
  /** Aborted when the client cancels or its deadline passes; long handlers stop early on it. */
  readonly signal: AbortSignal;
  /**
   * Who `authorize` let in, with their roles; null where nothing authorises (a server built without an
   * access gate, and the open health service) and inside `onCall`, which runs first.
   */
  readonly principal: Principal | null;
  /** The client's address as grpc-js reports it (`127.0.0.1:54321`, `::1:54321`), or `unknown`. */
  readonly peer?: string;
}

type Request<M> = M extends { input: infer I extends DescMessage } ? MessageShape<I> : never;
type Reply<M> = M extends { output: infer O extends DescMessage } ? MessageInitShape<O> : never;

export type Handler<M> = M extends { methodKind: 'unary' }
  ? (request: Request<M>, ctx: CallContext) => Promise<Reply<M>>
  : M extends { methodKind: 'server_streaming' }
    ? (request: Request<M>, ctx: CallContext, send: Send<Reply<M>>) => Promise<void>
    : M extends { methodKind: 'client_streaming' }
      ? (requests: AsyncIterable<Request<M>>, ctx: CallContext) => Promise<Reply<M>>
      : never;

/**
 * Sends one reply of a server stream, waiting while the client is slow. `written` is called once the reply has been
 * written out (perhaps never, if the call ends first); until then the reply's memory may still be read, so a sender
 * that reuses a reply's buffers (ByteStream Read) waits for it.
 */
export type Send<R> = (reply: R, written?: () => void) => Promise<void>;

/** One handler per method of a generated service, keyed by the method's localName (`findMissingBlobs`). */
export type ServiceHandlers<S extends Pick<DescService, 'method'>> = {
  [K in keyof S['method']]: Handler<S['method'][K]>;
};

export interface AdaptOptions {
  log: Logger;
  /** Called once per call before its handler, e.g. to log request metadata. */
  onCall?: (ctx: CallContext) => void;
  /**
   * Decides whether the call may go ahead, before its handler runs: resolves to the caller, or rejects
   * (a LarderError `unauthenticated`, `permission_denied` or `unavailable`) to end the call with that status.
   */
  authorize?: (ctx: CallContext) => Promise<Principal>;
  /** Told of every message's size and of every call's end (metrics); see grpc/observe.ts. */
  observe?: CallObserver;
}

export interface CallObserver {
  /** Bytes of one message as it crossed the wire: `in` from the client, `out` to it. */
  bytes(direction: 'in' | 'out', bytes: number): void;
  /** A call ended with `code`; `reply` is the unary or client-streaming reply of a call that succeeded. */
  finished(ctx: CallContext, code: grpc.status, reply?: unknown): void;
}

const UNDECODABLE = Symbol('undecodable');
interface Undecodable {
  readonly [UNDECODABLE]: string;
}

function isUndecodable(value: unknown): value is Undecodable {
  return typeof value === 'object' && value !== null && UNDECODABLE in value;
}

function serializer(schema: DescMessage) {
  const fast = singleBytesEncoder(schema) ?? digestListEncoder(schema) ?? batchReadResponseEncoder(schema);
  if (fast !== null) return fast;
  return (message: unknown): Buffer => encodedOnce(message, (m) => generic(schema, m));
}

/** The grpc-js definition of a service: the same for clients (throwing deserializers) and servers (safe ones). */
export function serviceDefinition(service: DescService, side: 'client' | 'server'): grpc.ServiceDefinition {
  const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const method of service.methods) {
    if (method.methodKind === 'bidi_streaming')
      throw new Error(`${method.name}: bidirectional streaming is not adapted`);
    const input = method.input;
    const protobufEs = (bytes: Uint8Array) => fromBinary(input, bytes);
    const decode = digestListDecoder(input) ?? repeatedRequestDecoder(input, protobufEs) ?? protobufEs;
    definition[method.localName] = {
      path: `/${service.typeName}/${method.name}`,
      requestStream: method.methodKind === 'client_streaming',
      responseStream: method.methodKind === 'server_streaming',
      requestSerialize: serializer(input),
      requestDeserialize:
        side === 'client'
          ? decode
          : (bytes: Buffer) => {
              try {
                return decode(bytes);
              } catch (err) {
                return {
                  [UNDECODABLE]: `malformed ${input.typeName}: ${(err as Error).message}`,
                } satisfies Undecodable;
              }
            },
      responseSerialize: serializer(method.output),
      responseDeserialize: digestListDecoder(method.output) ?? ((bytes: Buffer) => fromBinary(method.output, bytes)),
    };
  }
  return definition as grpc.ServiceDefinition;
}

/** Registers a generated service's handlers on a grpc-js server. */
export function addService<S extends DescService>(
  server: grpc.Server,
  service: S,
  handlers: ServiceHandlers<S>,
  options: AdaptOptions,
): void {
  const implementation: grpc.UntypedServiceImplementation = {};
  for (const method of service.methods) {
    const handler = (handlers as Record<string, unknown>)[method.localName];
    if (typeof handler !== 'function') throw new Error(`${service.typeName}: no handler for ${method.name}`);
    implementation[method.localName] = adaptMethod(method, handler as AnyHandler, options);
  }
  server.addService(observed(serviceDefinition(service, 'server'), options.observe), implementation);
}

/** The definition with every message's size reported to `observe`, counted where grpc-js (de)serialises it. */
function observed(definition: grpc.ServiceDefinition, observe: CallObserver | undefined): grpc.ServiceDefinition {
  if (observe === undefined) return definition;
  const counted: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [name, method] of Object.entries(definition as Record<string, grpc.MethodDefinition<unknown, unknown>>)) {
    counted[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        observe.bytes('in', bytes.byteLength);
        return method.requestDeserialize(bytes);
      },
      responseSerialize: (message: unknown) => {
        const bytes = method.responseSerialize(message);
        observe.bytes('out', bytes.byteLength);
        return bytes;
      },
    };
  }
  return counted as grpc.ServiceDefinition;
}

type AnyHandler = (first: unknown, ctx: CallContext, send?: unknown) => Promise<unknown>;
type ErrorCallback = (error: grpc.ServerErrorResponse | null, value?: unknown) => void;

function adaptMethod(method: DescMethod, handler: AnyHandler, options: AdaptOptions): grpc.UntypedHandleCall {
  const path = `/${method.parent.typeName}/${method.name}`;
  /** Per call, what stops listening for its cancel: called once the call is answered. */
  const stopWatching = new Attached<() => void>('stop watching');
  const finished = (ctx: CallContext, code: grpc.status, reply?: unknown) => {
    stopWatching.get(ctx)?.();
    options.observe?.finished(ctx, code, reply);
  };
  const fail = (ctx: CallContext, err: unknown): grpc.ServerErrorResponse => {
    const status = callStatus(err);
    finished(ctx, status.code);
    // With Bazel's invocation and action ids, so a failure can be found from the build that saw it.
    const fields = { ...callFields(ctx), code: grpc.status[status.code] };
    if (status.serverFault) options.log.error(`${path} failed: ${errorForLog(err)}`, fields);
    else options.log.debug(`${path}: ${status.details}`, fields);
    return Object.assign(new Error(status.details), { code: status.code, details: status.details });
  };
  // Cancellation is watched from the first moment (a client may give up while its credentials are
  // checked); the call is logged before it is authorised, so refused calls show up in debug logs too.
  // grpc-js reports 'cancelled' also when a call's stream closes after it was answered; by then nothing listens,
  // so the listener goes as the handler settles (an error with its stack per call is not free).
  const begin = (call: { metadata: grpc.Metadata; getPeer(): string } & NodeJS.EventEmitter): CallContext => {
    const controller = new AbortController();
    const cancelled = () => controller.abort(new LarderError('aborted', 'the client cancelled the call'));
    call.once('cancelled', cancelled);
    const ctx: CallContext = {
      path,
      metadata: call.metadata,
      signal: controller.signal,
      principal: null,
      peer: call.getPeer(),
    };
    stopWatching.set(ctx, () => call.removeListener('cancelled', cancelled));
    options.onCall?.(ctx);
    return ctx;
  };
  const authorized = async (ctx: CallContext): Promise<CallContext> =>
    options.authorize === undefined ? ctx : { ...ctx, principal: await options.authorize(ctx) };

  switch (method.methodKind) {
    case 'unary':
      return (call: grpc.ServerUnaryCall<unknown, unknown>, callback: ErrorCallback) => {
        const ctx = begin(call);
        authorized(ctx)
          .then(async (c) => handler(await decoded(call.request), c))
          .then(
            (reply) => {
              finished(ctx, grpc.status.OK, reply);
              callback(null, reply);
            },
            (err) => callback(fail(ctx, err)),
          );
      };
    case 'server_streaming':
      return (call: grpc.ServerWritableStream<unknown, unknown>) => {
        const begun = begin(call);
        authorized(begun)
          .then(async (ctx) => {
            const send = async (reply: unknown, written?: () => void) => {
              if (ctx.signal.aborted) throw ctx.signal.reason;
              if (!call.write(reply, written && (() => written()))) await drained(call, ctx.signal);
            };
            await handler(await decoded(call.request), ctx, send);
          })
          .then(
            () => {
              finished(begun, grpc.status.OK);
              call.end();
            },
            (err) => call.emit('error', fail(begun, err)),
          );
      };
    case 'client_streaming':
      return (call: grpc.ServerReadableStream<unknown, unknown>, callback: ErrorCallback) => {
        // The request stream is not read until the call is authorised: a refused upload stores nothing.
        const ctx = begin(call);
        authorized(ctx)
          .then((c) => handler(requests(call), c))
          .then(
            (reply) => {
              finished(ctx, grpc.status.OK, reply);
              callback(null, reply);
            },
            (err) => callback(fail(ctx, err)),
          );
      };
    default:
      throw new Error(`${path}: ${method.methodKind} is not adapted`);
  }
}

async function decoded(request: unknown): Promise<unknown> {
  if (isUndecodable(request)) throw new LarderError('invalid_argument', request[UNDECODABLE]);
  return request;
}

/**
 * Decoded messages a client stream holds ahead of its handler. Node's object-mode default is 16, which for
 * ByteStream Write is 16 MiB per upload, held while the handler writes and hashes the earlier ones: those buffers
 * outlived the young generation, and collecting them took mark-compacts, a fifth of a 64 MiB Write's CPU (issue 21).
 * One decoded message ahead still overlaps decoding with the handler; the HTTP/2 window holds the rest.
 */
const READ_AHEAD = 1;

async function* requests(call: grpc.ServerReadableStream<unknown, unknown>): AsyncGenerator<unknown> {
  // grpc-js makes the stream with the default, and Readable has no setter: its state is Node's, stable for years.
  const state = (call as unknown as { _readableState?: { highWaterMark?: unknown } })._readableState;
  if (typeof state?.highWaterMark === 'number') state.highWaterMark = READ_AHEAD;
  for await (const request of call) {
    if (isUndecodable(request)) throw new LarderError('invalid_argument', request[UNDECODABLE]);
    yield request;
  }
}

function drained(call: grpc.ServerWritableStream<unknown, unknown>, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = () => {
      call.off('drain', done);
      signal.removeEventListener('abort', aborted);
      resolve();
    };
    const aborted = () => {
      call.off('drain', done);
      reject(signal.reason);
    };
    call.on('drain', done);
    signal.addEventListener('abort', aborted, { once: true });
  });
}
