-- Argo CD resource health of a PolicySnapshot (pkg.seedcore.io/v1alpha1), Lua 5.1.
-- Healthy: stored, compiled and validated (Ready=True), whether or not it is active.
-- Degraded: refused or its fixtures failed (Stalled=True or Ready=False): only a new
-- snapshot fixes it. Progressing: not yet observed, being stored or validated.
local hs = {status = "Progressing", message = "Waiting for the PKG operator"}
local function condition(kind)
  if obj.status == nil or obj.status.conditions == nil then return nil end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == kind then return c end
  end
  return nil
end
if obj.status == nil then return hs end
local generation = obj.metadata.generation or 0
if obj.status.observedGeneration == nil or obj.status.observedGeneration < generation then
  hs.message = "Waiting for the PKG operator to observe generation " .. tostring(generation)
  return hs
end
local ready, stalled = condition("Ready"), condition("Stalled")
if (stalled ~= nil and stalled.status == "True") or (ready ~= nil and ready.status == "False") then
  hs.status = "Degraded"
  hs.message = (ready and ready.message) or (stalled and stalled.message) or "refused"
elseif ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  if obj.status.activeIn ~= nil then
    hs.message = "Ready; the active snapshot of " .. obj.status.activeIn
  else
    hs.message = "Ready; not active"
  end
elseif ready ~= nil then
  hs.message = ready.message or ready.reason or hs.message
end
return hs
