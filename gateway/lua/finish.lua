-- The end of an admitted request, in one atomic step: its leases are released, its use is
-- added to the monthly counters the budgets read, and its usage event enters the stream
-- the metering consumer ingests. Budgets and metering therefore count the same requests.
--
-- ARGV[1]  request id
-- ARGV[2]  the scopes holding a lease of it, comma-separated (from admit.lua)
-- ARGV[3]  all its scopes, comma-separated: their monthly counters count it
-- ARGV[4]  "1" when the request is billable (a successful inference)
-- ARGV[5]  its compute time in microseconds
-- ARGV[6]  the usage event, packed (gateway/admission.py EVENT_FIELDS)

for scope in string.gmatch(ARGV[2], '[^,]+') do
  redis.call('ZREM', 'gw:inflight:' .. scope, ARGV[1])
end
if ARGV[4] == '1' then
  -- The calendar month (UTC) of Redis's clock, from days since the epoch (civil-from-days).
  local time = redis.call('TIME')
  local z = math.floor(tonumber(time[1]) / 86400) + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local month = mp < 10 and mp + 3 or mp - 9
  local year = yoe + era * 400 + (month <= 2 and 1 or 0)
  local period = string.format('%04d%02d', year, month)
  for scope in string.gmatch(ARGV[3], '[^,]+') do
    local used = 'gw:use:' .. scope .. ':' .. period
    if redis.call('HINCRBY', used, 'req', 1) == 1 then
      redis.call('EXPIRE', used, 3456000)
    end
    redis.call('HINCRBY', used, 'cus', ARGV[5])
  end
end
return redis.call('XADD', 'usage:events', '*', 'e', ARGV[6])
