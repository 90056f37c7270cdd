-- Reads and clears the activity records of the given deployments in one step, so that no
-- call is counted twice or lost between read and reset; also swaps the last pass's time.
--
-- KEYS     gw:act:<deployment_id>, one per deployment
-- ARGV[1]  gw:autoscale:at, ARGV[2] this pass's time (ms)
-- Reply: one HGETALL list per key, in KEYS order, then the previous pass's time ('' if none).
local last_pass_key = ARGV[1]
local now_ms = ARGV[2]

local out = {}
for i, key in ipairs(KEYS) do
  out[i] = redis.call('HGETALL', key)
  if #out[i] > 0 then redis.call('DEL', key) end
end
local previous = redis.call('GET', last_pass_key)
redis.call('SET', last_pass_key, now_ms)
out[#KEYS + 1] = previous or ''
return out
