// The api worker of my-app: a small JSON cache in front of a legacy namespace.
import { cacheKey, type Lookup } from "./lib";

interface Env {
  CACHE: KVNamespace;
  LEGACY: KVNamespace;
  STAGE: string;
  APP: string;
  AUTH: Fetcher;
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const url = new URL(request.url);
    if (url.searchParams.has("whoami")) {
      return env.AUTH.fetch(request); // the auth worker, through the service binding
    }
    const id = url.searchParams.get("id");
    if (!id) {
      return Response.json({ app: env.APP, stage: env.STAGE, ok: true });
    }
    const key = cacheKey(env.STAGE, "user", id);
    const cached = await env.CACHE.get(key);
    if (cached !== null) {
      return Response.json({ hit: true, value: JSON.parse(cached) } satisfies Lookup);
    }
    const legacy = await env.LEGACY.get(id);
    if (legacy === null) {
      return new Response("not found", { status: 404 });
    }
    await env.CACHE.put(key, legacy, { expirationTtl: 3600 });
    return Response.json({ hit: false, value: JSON.parse(legacy) } satisfies Lookup);
  },
};
