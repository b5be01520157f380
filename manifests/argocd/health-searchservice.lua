-- ArgoCD health check for prism.dev/SearchService (a long-running service, judged like a Deployment):
-- Ready -> Healthy, Failed -> Degraded (an invalid spec, a RayService KubeRay refused, or an application
-- that failed to deploy, e.g. a model version mismatch), Pending and Deploying -> Progressing.
-- A status older than the spec (observedGeneration < generation) is Progressing until the operator
-- has seen the change.
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
if phase == "Ready" then
  hs.status = "Healthy"
  local parts = {}
  if obj.status.endpoint ~= nil and obj.status.endpoint ~= "" then
    table.insert(parts, obj.status.endpoint)
  end
  table.insert(parts, tostring(obj.status.readyReplicas or 0) .. " replicas")
  detail = detail .. " (" .. table.concat(parts, ", ") .. ")"
elseif phase == "Failed" then
  hs.status = "Degraded"
else
  hs.status = "Progressing"
end
hs.message = phase .. ": " .. detail
return hs
