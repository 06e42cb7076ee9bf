/** Moved to shared/ (the edge's action-cache validation uses it too); kept here for the executor's importers. */
export { mapLimit } from '../shared/map-limit.ts';
