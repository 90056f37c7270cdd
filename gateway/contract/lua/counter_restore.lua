-- Rebuilds a monthly counter that Redis lost, from the usage metered in PostgreSQL. Only
-- a counter that is gone is rebuilt: one present holds what the gateway counted since.
--
-- KEYS[1]  gw:use:<scope>:<yyyymm>
-- ARGV[1]  requests, ARGV[2] compute microseconds, ARGV[3] spend in micro-units ('' for
--          a scope other than a tenant's: only tenants' counters hold one)
-- Reply: 1 when restored, 0 when the counter existed (nothing written).
local counter = KEYS[1]
local requests = ARGV[1]
local compute_us = ARGV[2]
local forty_days_s = 3456000

if redis.call('EXISTS', counter) == 1 then return 0 end
redis.call('HSET', counter, 'req', requests, 'cus', compute_us)
if ARGV[3] ~= '' then redis.call('HSET', counter, 'spend', ARGV[3]) end
redis.call('EXPIRE', counter, forty_days_s)
return 1
