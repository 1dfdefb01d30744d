-- Argo CD health of an ispcert.dev IspIssuer or ClusterIspIssuer (argocd-cm keys
-- resource.customizations.health.ispcert.dev_IspIssuer and ..._ClusterIspIssuer; the two files
-- are the same script; see docs/gitops.md).
--
-- Decided from the conditions Ready and Stalled, never from their reasons, which grow over time.
-- A condition written for an older generation says nothing about the current spec and is ignored.
-- Only Lua's base library is used: Argo CD opens no string or math library for these checks.

local generation = obj.metadata.generation
local status = obj.status or {}

local function health(code, message)
  return { status = code, message = message }
end

-- The condition of this type, if it was written for the current generation.
local function condition(kind)
  for _, c in ipairs(status.conditions or {}) do
    if c.type == kind then
      if generation ~= nil and c.observedGeneration ~= nil and c.observedGeneration < generation then
        return nil
      end
      return c
    end
  end
  return nil
end

local function holds(c)
  return c ~= nil and c.status == "True"
end

-- What a condition says; its reason when it carries no message.
local function words(c)
  if c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return c.reason or c.type
end

-- observedGeneration 0 is no report at all (what a status default in the CRD would read).
local observed = status.observedGeneration
if generation ~= nil and observed ~= nil and observed > 0 and observed < generation then
  return health("Progressing", "the operator has not acted on generation " .. generation .. " yet (it last acted on "
    .. observed .. ")")
end

local ready, stalled = condition("Ready"), condition("Stalled")

-- Credentials refused or unreadable: the operator does not try them again (repeated wrong logins
-- can lock the billing account) until a person fixes them.
if holds(stalled) then
  return health("Degraded", words(stalled))
end
if holds(ready) then
  return health("Healthy", words(ready))
end
-- Not Ready but not Stalled: the billing is unreachable or answered with an error, and the check
-- is retried. (Without Stalled, from an operator before it, a refusal cannot be told from that.)
-- No Ready condition: the credentials have not been checked yet.
local why = "waiting for the operator to check the credentials"
if ready ~= nil then
  why = words(ready)
end
return health("Progressing", why)
