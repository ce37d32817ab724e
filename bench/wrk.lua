-- wrk script for bench/run.sh: every request as a random seeded user, with that
-- user's token. Arguments (after --): phase users tasks tokens-file cursors-file
local phase, users, tasks, tokens, cursors = "list", 1000, 20, {}, {}

function init(args)
  phase, users, tasks = args[1], tonumber(args[2]), tonumber(args[3])
  for line in io.lines(args[4]) do tokens[#tokens + 1] = line end
  if phase == "changes" then for line in io.lines(args[5]) do cursors[#cursors + 1] = line end end
end

local bodies = {
  update = '{"title":"Updated under load","description":"changed by wrk"}',
  create = '{"title":"Load task","description":"created under load by wrk"}',
}

function request()
  local u = math.random(users)
  local id = (u - 1) * tasks + math.random(tasks) -- user u owns ids (u-1)*tasks+1 .. u*tasks
  local user = string.format("bench-u%05d", u)
  local headers = { ["Authorization"] = "Bearer " .. tokens[u] }
  local base = "/api/" .. user .. "/tasks"
  if phase == "list" then return wrk.format("GET", base, headers) end
  if phase == "list_params" then return wrk.format("GET", base .. "?status=pending&sort=title&order=desc&q=task&tag=home&limit=20", headers) end
  if phase == "get" then return wrk.format("GET", base .. "/" .. id, headers) end
  if phase == "changes" then return wrk.format("GET", "/api/" .. user .. "/changes?since=" .. cursors[u], headers) end
  if phase == "toggle" then return wrk.format("PATCH", base .. "/" .. id .. "/complete", headers) end
  headers["Content-Type"] = "application/json"
  if phase == "update" then return wrk.format("PUT", base .. "/" .. id, headers, bodies.update) end
  -- create: writer users of their own, so the seeded lists keep 20 tasks
  return wrk.format("POST", "/api/" .. string.format("bench-w%05d", u) .. "/tasks",
    { ["Authorization"] = "Bearer " .. tokens[users + u], ["Content-Type"] = "application/json" }, bodies.create)
end

function done(summary, latency, requests)
  io.write(string.format("RESULT requests=%d rps=%.1f p50_ms=%.3f p99_ms=%.3f non2xx=%d\n",
    summary.requests, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
