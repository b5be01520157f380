-- ArgoCD health check for prism.dev/ExtractionJob (a batch job, judged like a Kubernetes Job):
-- Succeeded -> Healthy, Failed -> Degraded, Suspended -> Suspended, otherwise Progressing.
-- A status older than the spec (observedGeneration < generation) is Progressing until the
-- operator has seen the change.
local hs = {}
if obj.status == nil or obj.status.phase == nil then
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
local phase = obj.status.phase
local detail = obj.status.message or ""
if obj.status.reason ~= nil and obj.status.reason ~= "" then
  detail = obj.status.reason .. ": " .. detail
end
if phase == "Succeeded" then
  hs.status = "Healthy"
elseif phase == "Failed" then
  hs.status = "Degraded"
elseif phase == "Suspended" then
  hs.status = "Suspended"
else
  hs.status = "Progressing"
  local progress = obj.status.progress
  if progress ~= nil and progress.summary ~= nil and progress.summary ~= "" then
    detail = detail .. " (" .. progress.summary .. " files, " .. tostring(progress.percent or 0) .. "%)"
  end
end
hs.message = phase .. ": " .. detail
return hs
