-- Argo CD resource health of a PolicyDeployment (pkg.seedcore.io/v1alpha1), Lua 5.1.
-- Healthy: the rollout succeeded for this generation (Available=True).
-- Suspended: waiting at a manual gate for a person to promote (Paused=True).
-- Degraded: rolled back, aborted, failed, superseded or invalid (Degraded=True or
-- Stalled=True). Progressing: not yet observed, or rolling out.
local hs = {status = "Progressing", message = "Waiting for the PKG operator"}
local function condition(kind)
  if obj.status == nil or obj.status.conditions == nil then return nil end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == kind then return c end
  end
  return nil
end
local function is_true(kind)
  local c = condition(kind)
  return c ~= nil and c.status == "True"
end
if obj.status == nil then return hs end
local generation = obj.metadata.generation or 0
if obj.status.observedGeneration == nil or obj.status.observedGeneration < generation then
  hs.message = "Waiting for the PKG operator to observe generation " .. tostring(generation)
  return hs
end
hs.message = obj.status.message or obj.status.summary or ""
if is_true("Degraded") or is_true("Stalled") then
  hs.status = "Degraded"
elseif is_true("Paused") then
  hs.status = "Suspended"
elseif is_true("Available") then
  hs.status = "Healthy"
else
  hs.status = "Progressing"
end
return hs
