-- Writes a route unless Redis holds a newer one: two publishers that read the row at
-- different times may reach Redis in the other order, and the older state must not win.
--
-- KEYS[1]  gw:route:<tenant_id>:<name>
-- ARGV[1]  a wake marker to clear (gw:wake:<deployment_id>, when the route goes cold), or ''
-- ARGV[2..] the entry as field, value pairs; the first pair is v, the row's version
-- Reply: 1 when written, 0 when Redis already held a newer version (nothing written).
local route = KEYS[1]
local wake_marker = ARGV[1]
local version = tonumber(ARGV[3])

local current = redis.call('HGET', route, 'v')
if current and tonumber(current) > version then return 0 end
redis.call('HSET', route, unpack(ARGV, 2))
if wake_marker ~= '' then redis.call('DEL', wake_marker) end
return 1
