// The REST API as the editor calls it: the signed-in session, with Django's CSRF token on writes.

export class ApiError extends Error {
  constructor(status, error) {
    super(error?.message || `The server answered ${status}.`);
    this.status = status;
    this.code = error?.code ?? "http_error";
    this.errors = Array.isArray(error?.errors) ? error.errors : [];
  }
}

function cookie(name) {
  const match = document.cookie.split("; ").find((part) => part.startsWith(`${name}=`));
  return match ? decodeURIComponent(match.slice(name.length + 1)) : "";
}

/** A paginated list ({results}) or a plain one. */
export const listOf = (data) => (Array.isArray(data) ? data : data?.results ?? []);

export function createApi({ root = "/api/v1", csrfToken = "" } = {}) {
  async function request(method, path, body, { signal } = {}) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (method !== "GET") headers["X-CSRFToken"] = csrfToken || cookie("csrftoken");
    const response = await fetch(`${root}${path}`, {
      method, headers, credentials: "same-origin", signal,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = response.status === 204 ? null : await response.json().catch(() => null);
    if (!response.ok) throw new ApiError(response.status, data?.error);
    return data;
  }

  return {
    ops: () => request("GET", "/graphs/ops"),
    models: () => request("GET", "/models"),
    modelVersions: (modelId) => request("GET", `/models/${modelId}/versions`),
    validate: (spec, options) => request("POST", "/graphs/validate", { spec }, options),
    versions: (graphId) => request("GET", `/graphs/${graphId}/versions?limit=1000`),
    version: (graphId, number) => request("GET", `/graphs/${graphId}/versions/${number}`),
    saveVersion: (graphId, spec, message) => request("POST", `/graphs/${graphId}/versions`, { spec, message }),
    deployments: () => request("GET", "/deployments"),
    deployment: (id) => request("GET", `/deployments/${id}`),
    deploymentNodes: (id) => request("GET", `/deployments/${id}/nodes`),
    deploy: ({ name, graphVersion, executor }) => request("POST", "/deployments",
      { name, graph_version: graphVersion, executor }),
  };
}
