// @ts-check
// A typed client for the tasks API, as a frontend would write it: openapi-fetch
// over the types openapi-typescript generates from ../openapi.json
// (`npm run types` writes tasks-api.d.ts; it is not committed). Node runs this
// file as plain JavaScript; `npm run check` (tsc --noEmit, see tsconfig.json)
// holds every call made through it — path, path and query parameters, headers,
// body, response fields — to the document.
import createClient from "openapi-fetch";

/** @typedef {import("./tasks-api.js").paths} paths */
/** @typedef {import("./tasks-api.js").components["schemas"]["Task"]} Task */
/** @typedef {import("./tasks-api.js").components["schemas"]["TaskCreate"]} TaskCreate */
/** @typedef {import("./tasks-api.js").components["schemas"]["TaskUpdate"]} TaskUpdate */
/** @typedef {import("openapi-fetch").Client<paths>} TasksClient */

/**
 * tasksClient calls the API at baseUrl with a Bearer token. onResponse, if given,
 * sees every answer (method, URL, status, headers and body text) before the caller does,
 * and a throw there fails the call.
 * @param {string} baseUrl
 * @param {string} token
 * @param {(method: string, url: string, status: number, headers: Headers, body: string) => void} [onResponse]
 * @returns {TasksClient}
 */
export function tasksClient(baseUrl, token, onResponse) {
  /** @type {TasksClient} */
  const client = createClient({ baseUrl, headers: { Authorization: `Bearer ${token}` } });
  if (onResponse) {
    client.use({
      async onResponse({ request, response }) {
        onResponse(request.method, request.url, response.status, response.headers, await response.clone().text());
      },
    });
  }
  return client;
}
