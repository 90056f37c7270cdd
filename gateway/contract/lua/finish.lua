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
-- Reply: the usage event's stream id.

local request_id = ARGV[1]
local leased_scopes = ARGV[2]
local scopes = ARGV[3]
local billable = ARGV[4] == '1'
local compute_us = ARGV[5]
local period = ARGV[6]
local event = ARGV[7]
local deployment_id = ARGV[8]

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
  end
  if deployment_id ~= '' then
    redis.call('HINCRBY', 'gw:act:' .. deployment_id, 'us', compute_us)
  end
end
return redis.call('XADD', 'usage:events', '*', 'e', event)
