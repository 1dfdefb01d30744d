-- Argo CD health of an ispcert.dev IspCertificate (argocd-cm key
-- resource.customizations.health.ispcert.dev_IspCertificate; see docs/gitops.md).
--
-- Decided from the conditions Ready, Issuing and Stalled, never from their reasons: the operator
-- adds reasons over time, while what the three conditions mean is its contract. A condition
-- written for an older generation says nothing about the current spec and is ignored.
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

local ready, issuing, stalled = condition("Ready"), condition("Issuing"), condition("Stalled")

-- Nothing happens until a person acts: the message says what to do.
if holds(stalled) then
  return health("Degraded", words(stalled))
end
-- The Secret serves a valid certificate for this spec. A renewal waiting for approval can take
-- days while the old certificate serves, so it does not make the application Progressing.
if holds(ready) then
  if holds(issuing) then
    return health("Healthy", words(ready) .. " (meanwhile: " .. words(issuing) .. ")")
  end
  return health("Healthy", words(ready))
end
-- An order or reissue is under way, or a transient failure is being retried.
if holds(issuing) then
  return health("Progressing", words(issuing))
end
-- Not Ready and nothing under way, without Stalled: an operator version from before Stalled, or a
-- deletion the billing blocks; either waits for a person.
if ready ~= nil and ready.status == "False" then
  return health("Degraded", words(ready))
end
-- No conditions yet: the operator has not picked the certificate up, or its first reconcile is
-- still placing the order. Nothing is issued, so it is not Healthy.
return health("Progressing", "waiting for the operator's first report on this certificate")
