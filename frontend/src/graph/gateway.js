// Calls to a deployment through the gateway, from the browser: KServe v2 over HTTP with the
// caller's API key. The gateway answers CORS for the portal's origin (gateway/cors.py).

/** @returns {{infer: (name: string, body: object, key: string) => Promise<{ok: boolean, status: number, body: any, ms: number}>}} */
export function createGateway(url) {
  const root = String(url ?? "").replace(/\/+$/, "");
  return {
    url: root,
    async infer(name, body, key) {
      const started = performance.now();
      let response;
      try {
        response = await fetch(`${root}/v2/models/${encodeURIComponent(name)}/infer`, {
          method: "POST", mode: "cors", credentials: "omit",
          headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json", Accept: "application/json" },
          body: JSON.stringify(body),
        });
      } catch (error) {
        return { ok: false, status: 0, body: null, ms: performance.now() - started, failure: error.message };
      }
      const data = await response.json().catch(() => null);
      return { ok: response.ok, status: response.status, body: data, ms: performance.now() - started };
    },
  };
}
