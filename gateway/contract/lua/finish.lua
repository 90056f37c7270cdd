-- The end of an admitted request, in one atomic step: its leases are released, its use is
-- added to the monthly counters the budgets read, and its usage event enters the stream
-- the metering consumer ingests. Budgets and metering therefore count the same requests.
--
-- ARGV[1]  request id
-- ARGV[2]  the scopes holding a lease of it, comma-separated (from admit.lua)
-- ARGV[3]  all its scopes, comma-separated: their monthly counters count it
-- ARGV[4]  "1" when the request is billable (a successful inference)
-- ARGV[5]  its compute time in microseconds
-- ARGV[6]  the month (yyyymm) admit.lua checked its budgets against: it counts there
-- ARGV[7]  the usage event, packed (gateway/admission.py EVENT_FIELDS)
-- ARGV[8]  the deployment id ("" when none): its activity record gets the compute time

for scope in string.gmatch(ARGV[2], '[^,]+') do
  redis.call('ZREM', 'gw:inflight:' .. scope, ARGV[1])
end
if ARGV[4] == '1' then
  for scope in string.gmatch(ARGV[3], '[^,]+') do
    local used = 'gw:use:' .. scope .. ':' .. ARGV[6]
    if redis.call('HINCRBY', used, 'req', 1) == 1 then
      redis.call('EXPIRE', used, 3456000)
    end
    redis.call('HINCRBY', used, 'cus', ARGV[5])
  end
  if ARGV[8] ~= '' then
    redis.call('HINCRBY', 'gw:act:' .. ARGV[8], 'us', ARGV[5])
  end
end
return redis.call('XADD', 'usage:events', '*', 'e', ARGV[7])
