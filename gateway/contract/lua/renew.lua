-- Extends the in-flight leases of a gateway's long-running requests, so that only the
-- leases of a gateway that died expire.
--
-- ARGV[1]  lease lifetime in milliseconds
-- ARGV[2], ARGV[3], ...  pairs of (scopes holding its leases, comma-separated; request id)

local time = redis.call('TIME')
local expiry = string.format('%.0f', tonumber(time[1]) * 1000000 + tonumber(time[2]) + tonumber(ARGV[1]) * 1000)
local renewed = 0
for i = 2, #ARGV, 2 do
  for scope in string.gmatch(ARGV[i], '[^,]+') do
    renewed = renewed + redis.call('ZADD', 'gw:inflight:' .. scope, 'XX', 'CH', expiry, ARGV[i + 1])
  end
end
return renewed
