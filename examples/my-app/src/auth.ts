// The auth worker of my-app: api reaches it through a service binding
// (`AUTH: { service: auth }`, `env.AUTH.fetch(…)`), so it needs no public route of its own
// (`workersDev: false`).

interface Env {
  STAGE: string;
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const header = request.headers.get("authorization") ?? "";
    return Response.json({ stage: env.STAGE, authenticated: header.startsWith("Bearer ") });
  },
};
