/**
 * What a service works out from a Fetch or Push request (parsing it, naming its records), kept for requests seen
 * lately: Bazel asks for the same downloads, with the same URIs and checksums, in every build, and for a download
 * answered from the cache checking its URIs, decoding its SRI and naming its records cost more than the lookup.
 *
 * Safe because what is kept is worked out from nothing but the request's content, which is the memo's key: a
 * request with the same key gets what working it out again would give. Whatever throws (a request refused as
 * malformed) is not kept, so it is refused again. Bounded: at most LIMIT requests, each with a key of at most
 * MAX_KEY_CHARS (bigger requests are worked out every time); the one kept first goes first.
 */
import type { Qualifier } from '../../../shared/proto/gen/build/bazel/remote/asset/v1/remote_asset_pb.ts';
import type { DigestFunction_Value } from '../../../shared/proto/gen/build/bazel/remote/execution/v2/remote_execution_pb.ts';

/** The fields of a Fetch or Push request a memo's work may read; nothing else of the request may matter to it. */
export interface RequestContent {
  readonly instanceName: string;
  readonly digestFunction: DigestFunction_Value;
  readonly uris: readonly string[];
  readonly qualifiers: readonly Qualifier[];
}

const LIMIT = 4096;
const MAX_KEY_CHARS = 2048;

export class RequestMemo<T> {
  readonly #work: (request: RequestContent) => T;
  readonly #kept = new Map<string, T>();
  /** By the request object itself, for frozen requests; weak, so it holds nothing the decoder has let go of. */
  readonly #byObject = new WeakMap<object, T>();

  /** `work` must depend on RequestContent's fields only. */
  constructor(work: (request: RequestContent) => T) {
    this.#work = work;
  }

  /** What `work` gives for `request`, from the memo when a request with the same content was seen lately. */
  get(request: RequestContent): T {
    // A frozen request cannot change, so what was worked out from it still holds: grpc/repeated-requests.ts hands
    // the same frozen object to every call with the same bytes, and then not even the key needs building.
    const frozen = Object.isFrozen(request);
    if (frozen) {
      const same = this.#byObject.get(request);
      if (same !== undefined) return same;
    }
    const worked = this.#byContent(request);
    if (frozen) this.#byObject.set(request, worked);
    return worked;
  }

  #byContent(request: RequestContent): T {
    const key = contentKey(request);
    if (key === null) return this.#work(request);
    const kept = this.#kept.get(key);
    if (kept !== undefined) return kept;
    const worked = this.#work(request);
    this.#kept.set(key, worked);
    if (this.#kept.size > LIMIT) this.#kept.delete(this.#kept.keys().next().value!);
    return worked;
  }
}

/**
 * The request's content as one string, every part prefixed by its length so no two contents give the same key
 * (a URI may hold any character); null when it would be longer than MAX_KEY_CHARS.
 */
function contentKey(request: RequestContent): string | null {
  // Every part adds its length prefix too: a few characters, counted generously.
  let chars = request.instanceName.length + 12 * (request.uris.length + 2 * request.qualifiers.length);
  for (const uri of request.uris) chars += uri.length;
  for (const { name, value } of request.qualifiers) chars += name.length + value.length;
  if (chars > MAX_KEY_CHARS) return null;
  let key = `${request.digestFunction} ${request.uris.length} ${request.instanceName.length}:${request.instanceName}`;
  for (const uri of request.uris) key += `${uri.length}:${uri}`;
  for (const { name, value } of request.qualifiers) key += `${name.length}:${name}${value.length}:${value}`;
  return key;
}
