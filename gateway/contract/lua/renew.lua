-- Extends the in-flight leases of a gateway's long-running requests, so that only the
-- leases of a gateway that died expire.
--
-- KEYS     none: the leases are gw:inflight:<scope> (contract/keys.py), named from ARGV
--
-- ARGV[1]  lease lifetime in milliseconds
-- ARGV[2], ARGV[3], ...  pairs of (scopes holding its leases, comma-separated; request id)
-- Reply: how many leases were extended (a lease already expired and dropped is not revived).

local lease_ms = tonumber(ARGV[1])

local time = redis.call('TIME')
local expiry = string.format('%.0f', tonumber(time[1]) * 1000000 + tonumber(time[2]) + lease_ms * 1000)
local renewed = 0
for i = 2, #ARGV, 2 do
  local leased_scopes, request_id = ARGV[i], ARGV[i + 1]
  for scope in string.gmatch(leased_scopes, '[^,]+') do
    renewed = renewed + redis.call('ZADD', 'gw:inflight:' .. scope, 'XX', 'CH', expiry, request_id)
  end
end
return renewed
