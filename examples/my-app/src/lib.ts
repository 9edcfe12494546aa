// Helpers shared by the api worker's routes.

export type Lookup = { hit: boolean; value: unknown };

/** `${stage}:${kind}:${id}`: keys are prefixed by stage so stages never collide. */
export function cacheKey(stage: string, kind: string, id: string): string {
  return `${stage}:${kind}:${id}`;
}
