// @ts-check
// The task lifecycle run.mjs puts each user through, made with the typed client
// (client.mjs), so `npm run check` type-checks these calls against openapi.json.
import { tasksClient } from "./client.mjs";

/** @typedef {import("./client.mjs").Task} Task */
/** @typedef {import("./client.mjs").TaskCreate} TaskCreate */
/** @typedef {import("./client.mjs").TaskUpdate} TaskUpdate */

/**
 * @param {unknown} cond
 * @param {string} msg
 * @returns {asserts cond}
 */
export function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

/**
 * lifecycle creates, lists, reads, updates, stale-updates, toggles, filters and
 * invalidly creates the user's tasks; conform sees every answer.
 * @param {string} base
 * @param {{ id: string, name: string }} user
 * @param {string} token
 * @param {Parameters<typeof tasksClient>[2]} conform
 * @returns {Promise<Task>}
 */
export async function lifecycle(base, user, token, conform) {
  const api = tasksClient(base, token, conform);
  const path = `/api/${encodeURIComponent(user.id)}/tasks`;
  const user_id = user.id;
  // Bodies are declared with their schema's type: openapi-fetch's body parameter
  // does not flag an unknown field once the required ones are there
  // (openapi-ts/openapi-typescript#1769); a typed declaration does.
  /** @type {TaskCreate} */
  const newTask = { title: `${user.name}'s task`, priority: "high", tags: ["e2e"] };
  /** @type {TaskUpdate} */
  const edit = { description: "edited", due_date: "2027-01-15" };
  /** @type {TaskUpdate} */
  const staleEdit = { title: "stale edit" };
  /** @type {TaskCreate} */
  const emptyTitle = { title: "" };

  const created = await api.POST("/api/{user_id}/tasks", {
    params: { path: { user_id } },
    body: newTask,
  });
  const task = created.data;
  assert(
    created.response.status === 201 && task?.user_id === user.id && created.response.headers.get("location") === `${path}/${task.id}`,
    `create: ${created.response.status}`,
  );
  const etag = created.response.headers.get("etag");
  assert(etag, "create: no ETag");
  const id = task.id;

  const list = await api.GET("/api/{user_id}/tasks", { params: { path: { user_id } } });
  assert(
    list.response.status === 200 && list.data?.some((t) => t.id === task.id) && list.response.headers.get("x-total-count") === String(list.data.length),
    `list: ${list.response.status}`,
  );

  const got = await api.GET("/api/{user_id}/tasks/{id}", { params: { path: { user_id, id } } });
  assert(got.response.status === 200 && got.data?.title === task.title, `get: ${got.response.status}`);

  const updated = await api.PATCH("/api/{user_id}/tasks/{id}", {
    params: { path: { user_id, id }, header: { "If-Match": etag } },
    body: edit,
  });
  assert(
    updated.response.status === 200 && updated.data?.description === "edited" && updated.data.due_date === "2027-01-15",
    `update: ${updated.response.status}`,
  );

  const stale = await api.PUT("/api/{user_id}/tasks/{id}", {
    params: { path: { user_id, id }, header: { "If-Match": etag } },
    body: staleEdit,
  });
  assert(stale.response.status === 412, `stale If-Match: ${stale.response.status}`);

  const toggled = await api.PATCH("/api/{user_id}/tasks/{id}/complete", { params: { path: { user_id, id } } });
  assert(
    toggled.response.status === 200 && toggled.data?.completed === true && typeof toggled.data.completed_at === "string",
    `toggle: ${toggled.response.status}`,
  );

  const done = await api.GET("/api/{user_id}/tasks", { params: { path: { user_id }, query: { status: "completed", tag: ["e2e"] } } });
  assert(done.response.status === 200 && done.data?.length === 1, `list completed: ${done.data?.length}`);

  // The change feed from the first sync on, one task a page: this task comes completed, once.
  /** @type {Map<number, Task>} */
  const copy = new Map();
  /** @type {string | undefined} */
  let since;
  for (let more = true; more; ) {
    const page = await api.GET("/api/{user_id}/changes", { params: { path: { user_id }, query: { limit: 1, ...(since ? { since } : {}) } } });
    assert(page.response.status === 200 && page.data, `changes: ${page.response.status}`);
    for (const t of page.data.tasks) copy.set(t.id, t);
    for (const gone of page.data.deleted) copy.delete(gone);
    since = page.data.cursor;
    more = page.data.has_more;
  }
  assert(copy.get(id)?.completed === true && copy.size === list.data?.length, `changes: ${copy.size} tasks, task ${id} ${JSON.stringify(copy.get(id))}`);

  const invalid = await api.POST("/api/{user_id}/tasks", { params: { path: { user_id } }, body: emptyTitle });
  assert(
    invalid.response.status === 422 && Array.isArray(invalid.error?.detail) && invalid.error.detail[0].loc.join(".") === "body.title",
    `invalid create: ${invalid.response.status}`,
  );
  return task;
}
