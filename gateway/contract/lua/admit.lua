-- Admission of one gateway request, decided atomically with Redis's clock.
--
-- KEYS[1]  gw:key:<sha256 of the API key>
-- ARGV[1]  deployment name (the tenant's name for it)
-- ARGV[2]  request body size in bytes
-- ARGV[3]  request id (the member of the in-flight leases)
-- ARGV[4]  lease lifetime in milliseconds (gateways renew leases of longer requests)
-- ARGV[5]  "1" for an inference request (budgets apply), "0" for metadata and readiness
-- ARGV[6]  lifetime in milliseconds of the marker that makes one caller wake a cold deployment
--
-- Scopes: t:<tenant>, d:<deployment>, k:<key>. Per scope, from gw:lim:<scope>:
--   rate, burst      GCRA: sustained requests per second and the burst above it
--   conc             requests in flight (a sorted set of leases scored by expiry)
--   mreq, mreq_soft  requests per calendar month (UTC), soft = allow, flag
--   mcs, mcs_soft    compute seconds per calendar month
--   payload          largest request body
-- Monthly use lives in gw:use:<scope>:<yyyymm> (fields req, cus), written by finish.lua.
--
-- Spend (gw:bill:<tenant>, billing/spend.py), for an inference request, after the budgets:
--   blocked          past due beyond the grace: 402 payment_required
--   limit, soft      the monthly spend limit in micro-units; it is reached when the estimate,
--                    the tenant's counter `spend` (list prices of its requests, finish.lua)
--                    plus `ofs` (the ledger's exact total minus what the counter charged
--                    for the usage rated so far), is >= limit: hard refuses (429
--                    insufficient_quota), soft flags; `ofs_next` when the month turned
--   req_<hw>, ms_<hw> the list price per request and per compute ms of the deployment's
--                    hardware (the route's hw): they travel with the request to finish.lua
-- Overshoot bound: a request is admitted only while the estimate is below the limit, and
-- adds at most its own cost once it finishes. So after the last admission, the spend can
-- grow only by the costs of the requests in flight at that moment (that one included):
-- the final spend is at most limit + the sum of their costs, <= in flight x (price per
-- request + price per ms x the longest compute time), whatever the number of gateways.
--
-- Reply: {status, code, message, route fields..., headers..., scopes, flags, leased scopes,
--         the month (yyyymm) whose budgets it counts against, "1" when this caller wakes the
--         deployment (it is cold and nobody else is waking it), the deployment's signature
--         (gateway/signature.py: what its requests are checked against), the price per
--         request and per compute ms in micro-units ("" when the request costs nothing)}
--
-- An admitted inference also marks its deployment's activity for the autoscaler in
-- gw:act:<deployment> (f: first call since the autoscaler last read it, l: last call, in
-- milliseconds of Redis's clock); finish.lua adds the upstream time (us).
-- Nothing is written unless the request is admitted; a refusal consumes nothing.

local key_entry = KEYS[1]
local name = ARGV[1]
local body_size = tonumber(ARGV[2])
local request_id = ARGV[3]
local lease_ttl = tonumber(ARGV[4]) * 1000
local is_infer = ARGV[5] == '1'
local wake_marker_ms = ARGV[6]

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])

local key = redis.call('HMGET', key_entry, 'tenant_id', 'key_id', 'scopes', 'revoked')
local tenant, key_id, key_scopes, revoked = key[1], key[2], key[3], key[4]
if not tenant then
  return {401, 'unauthenticated', 'Unknown API key.'}
end
if revoked == '1' then
  return {401, 'unauthenticated', 'This API key has been revoked.'}
end
if not string.find(',' .. (key_scopes or '') .. ',', ',infer,', 1, true) then
  return {403, 'permission_denied', "This API key lacks the 'infer' scope."}
end
local route = redis.call('HMGET', 'gw:route:' .. tenant .. ':' .. name,
  'deployment_id', 'model_version_id', 'triton_model', 'state', 'http_url', 'grpc_url', 'error', 'sig', 'hw')
local deployment_id, route_state = route[1], route[4]

local scopes = {'t:' .. tenant, 'k:' .. key_id}
local labels = {'tenant', 'key'}
if deployment_id then
  scopes[3] = 'd:' .. deployment_id
  labels[3] = 'deployment'
end

-- The calendar month (UTC) of Redis's clock, from days since the epoch (civil-from-days).
local z = math.floor(now / 86400000000) + 719468
local era = math.floor(z / 146097)
local doe = z - era * 146097
local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
local mp = math.floor((5 * doy + 2) / 153)
local month = mp < 10 and mp + 3 or mp - 9
local year = yoe + era * 400 + (month <= 2 and 1 or 0)
local period = string.format('%04d%02d', year, month)

local limits, inflight, flags = {}, {}, {}

-- A scope's limits, in the order HMGET reads them from its entry.
local RATE, BURST, CONC, MREQ, MREQ_SOFT, MCS, MCS_SOFT, PAYLOAD = 1, 2, 3, 4, 5, 6, 7, 8
for i, scope in ipairs(scopes) do
  local l = redis.call('HMGET', 'gw:lim:' .. scope, 'rate', 'burst', 'conc', 'mreq', 'mreq_soft', 'mcs', 'mcs_soft',
    'payload')
  limits[i] = l
  if l[PAYLOAD] and body_size > tonumber(l[PAYLOAD]) then
    return {413, 'payload_too_large', 'The request body (' .. body_size .. ' bytes) exceeds the ' .. labels[i] ..
      ' limit of ' .. l[PAYLOAD] .. ' bytes.'}
  end
end

-- Budgets. Requests in flight count against a request budget, so that concurrent requests
-- cannot overshoot it.
-- A scope holds leases when something counts them: a concurrency limit, a request budget,
-- or always for the tenant (its requests in flight are shown to it). Expired leases (of a
-- gateway that died) are not counted; the control plane's sweep removes them.
local now_s = string.format('%.0f', now)
local inflight_key, leased = {}, {}
for i, scope in ipairs(scopes) do
  local l = limits[i]
  if i == 1 or l[CONC] or l[MREQ] then
    inflight_key[i] = 'gw:inflight:' .. scope
    leased[#leased + 1] = scope
    inflight[i] = redis.call('ZCOUNT', inflight_key[i], '(' .. now_s, '+inf')
  else
    inflight[i] = 0
  end
  if is_infer and (l[MREQ] or l[MCS]) then
    local used = redis.call('HMGET', 'gw:use:' .. scope .. ':' .. period, 'req', 'cus')
    local req, cus = tonumber(used[1] or '0'), tonumber(used[2] or '0')
    if l[MREQ] and req + inflight[i] >= tonumber(l[MREQ]) then
      if l[MREQ_SOFT] == '1' then
        flags[#flags + 1] = labels[i] .. '_monthly_requests'
      else
        return {429, 'insufficient_quota', 'The ' .. labels[i] .. ' has used its ' .. l[MREQ] ..
          ' requests for this month.', 'budget'}
      end
    end
    if l[MCS] and cus >= tonumber(l[MCS]) * 1000000 then
      if l[MCS_SOFT] == '1' then
        flags[#flags + 1] = labels[i] .. '_monthly_compute'
      else
        return {429, 'insufficient_quota', 'The ' .. labels[i] .. ' has used its ' .. l[MCS] ..
          ' compute seconds for this month.', 'budget'}
      end
    end
  end
end

-- Spend: the tenant's standing and spend limit (its counter has the month's requests at
-- list prices; `ofs` brings that estimate to the ledger's exact total, see the header).
local price_req, price_ms = '', ''
if is_infer then
  local hw = route[9] or 'cpu'
  local bill = redis.call('HMGET', 'gw:bill:' .. tenant, 'blocked', 'limit', 'soft', 'month', 'ofs', 'ofs_next',
    'cur', 'req_' .. hw, 'ms_' .. hw)
  if bill[1] == '1' then
    return {402, 'payment_required', 'Payment for this account failed: update the payment method on the ' ..
      "portal's Billing page; requests are refused until the invoice is paid.", 'payment'}
  end
  if bill[2] then
    local spent = tonumber(redis.call('HGET', 'gw:use:t:' .. tenant .. ':' .. period, 'spend') or '0')
    local ofs = tonumber((bill[4] == period and bill[5] or bill[6]) or '0')
    if spent + ofs >= tonumber(bill[2]) then
      if bill[3] == '1' then
        flags[#flags + 1] = 'tenant_spend_limit'
      else
        return {429, 'insufficient_quota', 'The tenant has reached its monthly spend limit of ' ..
          string.format('%.2f', tonumber(bill[2]) / 1000000) .. (bill[7] and ' ' .. bill[7] or '') ..
          "; an owner can raise it on the portal's Billing page.", 'budget'}
      end
    end
  end
  price_req, price_ms = bill[8] or '', bill[9] or ''
end

-- Rate (GCRA): a scope admits the request when its theoretical arrival time, advanced by
-- one emission interval, stays within the burst of now.
local new_tat, policy, state = {}, {}, {}
local tight_limit, tight_remaining, tight_reset = nil, nil, nil
local refused_wait, refused_label = nil, nil
for i, scope in ipairs(scopes) do
  local l = limits[i]
  if l[RATE] then
    local rate = tonumber(l[RATE])
    local interval = 1000000 / rate
    local burst = tonumber(l[BURST] or '0')
    if burst < 1 then burst = math.max(1, math.floor(rate)) end
    local capacity = burst * interval
    local tat = tonumber(redis.call('GET', 'gw:rate:' .. scope) or '0')
    if tat < now then tat = now end
    -- Debt run up under a stricter limit than the current one is forgiven down to a bucket
    -- with one request left: a raised limit admits the next request.
    -- (Under an unchanged limit the stored time never passes now + capacity.)
    if tat > now + capacity then tat = now + capacity - interval end
    local next_tat = tat + interval
    if next_tat - now > capacity then
      local wait = next_tat - capacity - now
      if not refused_wait or wait > refused_wait then
        refused_wait, refused_label = wait, labels[i]
      end
    else
      new_tat[i] = next_tat
      local remaining = math.floor((capacity - (next_tat - now)) / interval)
      local reset = (next_tat - now) / 1000000
      local window = math.ceil(capacity / 1000000)
      policy[#policy + 1] = '"' .. labels[i] .. '";q=' .. burst .. ';w=' .. window
      state[#state + 1] = '"' .. labels[i] .. '";r=' .. remaining .. ';t=' .. math.ceil(reset)
      if not tight_remaining or remaining < tight_remaining then
        tight_limit, tight_remaining, tight_reset = burst, remaining, reset
      end
    end
  end
end
if refused_wait then
  return {429, 'rate_limited', 'Rate limit of the ' .. refused_label .. ' exceeded; retry in ' ..
    string.format('%.3f', refused_wait / 1000000) .. ' s.', 'rate', tostring(math.ceil(refused_wait / 1000))}
end

for i, scope in ipairs(scopes) do
  local conc = limits[i][CONC]
  if conc and inflight[i] >= tonumber(conc) then
    return {429, 'concurrency_limit', 'The ' .. labels[i] .. ' already has ' .. inflight[i] ..
      ' requests in flight, its limit.', 'concurrency', '1000'}
  end
end

-- Admitted: take the rate slots and the leases.
for i, scope in ipairs(scopes) do
  if new_tat[i] then
    redis.call('SET', 'gw:rate:' .. scope, string.format('%.0f', new_tat[i]), 'PX',
      string.format('%.0f', math.ceil((new_tat[i] - now) / 1000) + 1000))
  end
  if inflight_key[i] then
    redis.call('ZADD', inflight_key[i], string.format('%.0f', now + lease_ttl), request_id)
  end
end

local wake = '0'
if deployment_id then
  if is_infer then
    local act = 'gw:act:' .. deployment_id
    local ms = string.format('%.0f', math.floor(now / 1000))
    redis.call('HSETNX', act, 'f', ms)
    redis.call('HSET', act, 'l', ms)
  end
  if route_state == 'cold' and redis.call('SET', 'gw:wake:' .. deployment_id, '1', 'NX', 'PX', wake_marker_ms) then
    wake = '1'
  end
end

local reset = ''
if tight_reset then reset = string.format('%.3fs', tight_reset) end
return {200, 'ok', '', tenant, key_id,
  route[1] or '', route[2] or '', route[3] or '', route[4] or '', route[5] or '', route[6] or '', route[7] or '',
  table.concat(policy, ', '), table.concat(state, ', '),
  tight_limit and tostring(tight_limit) or '', tight_remaining and tostring(tight_remaining) or '', reset,
  table.concat(scopes, ','), table.concat(flags, ','), table.concat(leased, ','), period, wake, route[8] or '',
  price_req, price_ms}
