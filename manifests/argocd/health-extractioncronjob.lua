-- ArgoCD health check for prism.dev/ExtractionCronJob (a schedule, judged like a CronJob): Healthy
-- while it schedules runs (its runs are ExtractionJobs with their own health), Suspended when
-- spec.suspend is true, Degraded when the operator refused its spec (InvalidSpec: no run is created),
-- Progressing while the operator retries a failed API call (ApiError).
-- A status older than the spec (observedGeneration < generation) is Progressing until the operator
-- has seen the change.
local hs = {}
if obj.status == nil or obj.status.reason == nil or obj.status.reason == "" then
  hs.status = "Progressing"
  hs.message = "Waiting for the Prism operator to report a status"
  return hs
end
local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the Prism operator to observe generation " .. tostring(generation)
  return hs
end
local reason = obj.status.reason
local detail = obj.status.message or ""
if reason == "InvalidSpec" then
  hs.status = "Degraded"
elseif reason == "Suspended" then
  hs.status = "Suspended"
elseif reason == "ApiError" then
  hs.status = "Progressing"  -- a run could not be created or deleted; the operator retries
else
  hs.status = "Healthy"
  if obj.status.nextScheduleTime ~= nil then
    detail = "next run " .. obj.status.nextScheduleTime
    if obj.status.lastJob ~= nil then
      detail = detail .. ", last " .. obj.status.lastJob
    end
    if obj.status.message ~= nil and obj.status.message ~= "" then
      detail = detail .. "; " .. obj.status.message
    end
  end
end
hs.message = reason .. ": " .. detail
return hs
