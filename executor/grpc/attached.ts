/**
 * A value kept with an object made for one call (a decoded request, a reply), as a WeakMap keyed by the object would
 * keep it, but on the object itself: a non-enumerable property under a symbol of its own, so no message field, encoder
 * or `Object.keys` sees it.
 *
 * Why not a WeakMap: the map's table lives in V8's old generation, and its values outlived their keys through every
 * young collection until the next full one. The columns of a FindMissingBlobs of 10,000 digests were then copied and
 * promoted by each young collection after their call had ended: 4.4 MB per collection, pauses of 13-20 ms every third
 * call, where with the values on the objects 10 KB was promoted and the pauses took 1.5-7 ms (issue 21).
 *
 * Set only on objects that are not frozen (a frozen object takes no new property); `delete` leaves the property with
 * nothing in it rather than removing it, which would turn the object into a slow dictionary.
 */
export class Attached<T> {
  readonly #key: symbol;

  constructor(description: string) {
    this.#key = Symbol(description);
  }

  get(object: object): T | undefined {
    return (object as Record<symbol, T | undefined>)[this.#key];
  }

  set(object: object, value: T): void {
    Object.defineProperty(object, this.#key, { value, writable: true, configurable: true });
  }

  delete(object: object): void {
    if (this.get(object) !== undefined) (object as Record<symbol, T | undefined>)[this.#key] = undefined;
  }
}
