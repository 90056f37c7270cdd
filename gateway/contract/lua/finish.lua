-- The end of an admitted request, in one atomic step: its leases are released, its use is
-- added to the monthly counters the budgets read, and its usage event enters the stream
-- the metering consumer ingests. Budgets and metering therefore count the same requests.
--
-- KEYS     none: the keys are named from the scopes (gw:inflight:<scope>, gw:use:<scope>:<yyyymm>),
--          the deployment (gw:act:<id>) and the stream (usage:events), as contract/keys.py lists them
--
-- ARGV[1]  request id
-- ARGV[2]  the scopes holding a lease of it, comma-separated (from admit.lua)
-- ARGV[3]  all its scopes, comma-separated: their monthly counters count it
-- ARGV[4]  "1" when the request is billable (a successful inference)
-- ARGV[5]  its compute time in microseconds
-- ARGV[6]  the month (yyyymm) admit.lua checked its budgets against: it counts there
-- ARGV[7]  the usage event, packed (gateway/contract/usage.py EVENT_FIELDS)
-- ARGV[8]  the deployment id ("" when none): its activity record gets the compute time
-- ARGV[9]  the price per request and ARGV[10] per compute ms, in micro-units (from admit.lua;
--          "" when none): a billable request adds its cost, ceil(per request + per ms x
--          compute ms), to its tenant's counter (field spend). Rounded up, so that the counter
--          never counts less than the list prices it stands for.
-- Reply: the usage event's stream id.

local request_id = ARGV[1]
local leased_scopes = ARGV[2]
local scopes = ARGV[3]
local billable = ARGV[4] == '1'
local compute_us = ARGV[5]
local period = ARGV[6]
local event = ARGV[7]
local deployment_id = ARGV[8]
local price_req = tonumber(ARGV[9]) or 0
local price_ms = tonumber(ARGV[10]) or 0

for scope in string.gmatch(leased_scopes, '[^,]+') do
  redis.call('ZREM', 'gw:inflight:' .. scope, request_id)
end
if billable then
  for scope in string.gmatch(scopes, '[^,]+') do
    local used = 'gw:use:' .. scope .. ':' .. period
    if redis.call('HINCRBY', used, 'req', 1) == 1 then
      redis.call('EXPIRE', used, 3456000)
    end
    redis.call('HINCRBY', used, 'cus', compute_us)
    if string.sub(scope, 1, 2) == 't:' and (price_req > 0 or price_ms > 0) then
      local cost = math.ceil(price_req + price_ms * tonumber(compute_us) / 1000)
      redis.call('HINCRBY', used, 'spend', string.format('%.0f', cost))
    end
  end
  if deployment_id ~= '' then
    redis.call('HINCRBY', 'gw:act:' .. deployment_id, 'us', compute_us)
  end
end
return redis.call('XADD', 'usage:events', '*', 'e', event)
