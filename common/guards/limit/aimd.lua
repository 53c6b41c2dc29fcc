-- One sync of a process with its service's fleet-wide AIMD limit, atomically.
-- Mirrors common/guards/limit/aimd.py (classify + update) for the window it closes;
-- a Hypothesis test runs random windows through both and demands they agree.
-- Also renews this process's leases, grants or takes back slots, and counts samples.
--
-- Time is Redis's own (TIME), so workers whose clocks disagree still agree on when
-- a lease lapsed or a window closed; a test may pass its clock as ARGV[1] instead.
-- The service's keys expire after ARGV[19] ms without a sync; the index of services
-- is scored by that expiry, in Redis time, and trimmed here.
--
-- KEYS: 1 state hash, 2 leases zset, 3 peaks hash, 4 index of services (sorted set)
-- ARGV: 1 now ('' for Redis's clock), 2 lease ttl, 3 process id, 4 want, 5 next seq,
--       6 count, 7 drops, 8 latency_us, 9 peak, 10 initial, 11 min, 12 max,
--       13 backoff_ratio, 14 step, 15 latency_target, 16 window, 17 service,
--       18 number of busy ids, 19 TTL of the keys (ms), 20.. busy ids, then free ids
-- Reply: {limit, changed ({old, new, reason} or {}), lost ids, kept ids, granted ids,
--         slots held fleet-wide}
local state, leases, peaks, index = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local clock = redis.call('TIME')
local redis_now = tonumber(clock[1]) + tonumber(clock[2]) / 1e6
local now = tonumber(ARGV[1]) or redis_now
local ttl = tonumber(ARGV[2])
local proc = ARGV[3]
local want = tonumber(ARGV[4])
local seq = tonumber(ARGV[5])
local count = tonumber(ARGV[6])
local drops = tonumber(ARGV[7])
local latency_us = tonumber(ARGV[8])
local peak = tonumber(ARGV[9])
local o_initial = tonumber(ARGV[10])
local o_min = tonumber(ARGV[11])
local o_max = tonumber(ARGV[12])
local o_ratio = tonumber(ARGV[13])
local o_step = tonumber(ARGV[14])
local o_target = tonumber(ARGV[15])
local o_window = tonumber(ARGV[16])
local service = ARGV[17]
local nbusy = tonumber(ARGV[18])
local keys_ttl_ms = tonumber(ARGV[19])

redis.call('ZREMRANGEBYSCORE', leases, '-inf', now)

local limit = tonumber(redis.call('HGET', state, 'limit'))
if not limit then
  limit = o_initial
  redis.call('HSET', state, 'limit', limit, 'window_start', tostring(now),
             'count', 0, 'drops', 0, 'latency_us', 0)
end
redis.call('HSET', state, 'min', o_min, 'max', o_max, 'window_seconds', tostring(o_window))

if count > 0 then
  redis.call('HINCRBY', state, 'count', count)
  redis.call('HINCRBY', state, 'drops', drops)
  redis.call('HINCRBY', state, 'latency_us', latency_us)
end
if peak > 0 then
  local old = tonumber(redis.call('HGET', peaks, proc)) or 0
  if peak > old then redis.call('HSET', peaks, proc, peak) end
end

-- Whoever syncs first after the window's end applies the rule, once.
local changed = {}
local window_start = tonumber(redis.call('HGET', state, 'window_start')) or now
if now >= window_start + o_window then
  local c = tonumber(redis.call('HGET', state, 'count')) or 0
  local d = tonumber(redis.call('HGET', state, 'drops')) or 0
  local lat = tonumber(redis.call('HGET', state, 'latency_us')) or 0
  local p = 0
  for _, v in ipairs(redis.call('HVALS', peaks)) do p = p + tonumber(v) end
  local avg = 0
  local reason = 'steady'
  if c > 0 then
    avg = (lat / c) / 1e6
    if d > 0 then reason = 'drop'
    elseif avg > o_target then reason = 'latency'
    elseif p * 2 >= limit then reason = 'load' end
  end
  local new = limit
  if reason == 'drop' or reason == 'latency' then new = math.floor(limit * o_ratio)
  elseif reason == 'load' then new = limit + o_step end
  new = math.min(o_max, math.max(o_min, new))
  redis.call('HSET', state, 'limit', new, 'window_start', tostring(now),
             'count', 0, 'drops', 0, 'latency_us', 0,
             'last_count', c, 'last_drops', d, 'last_peak', p,
             'last_avg_latency', tostring(avg), 'last_reason', reason,
             'last_closed_at', tostring(now))
  redis.call('DEL', peaks)
  if new ~= limit then
    changed = {limit, new, reason}
    redis.call('HSET', state, 'changed_at', tostring(now))
  end
  limit = new
end

local expiry = now + ttl
local lost = {}
local busy_valid = 0
for i = 20, 19 + nbusy do
  if redis.call('ZSCORE', leases, ARGV[i]) then
    redis.call('ZADD', leases, 'XX', expiry, ARGV[i])
    busy_valid = busy_valid + 1
  else
    lost[#lost + 1] = ARGV[i]
  end
end
local free_valid = {}
for i = 20 + nbusy, #ARGV do
  if redis.call('ZSCORE', leases, ARGV[i]) then free_valid[#free_valid + 1] = ARGV[i] end
end

local others = redis.call('ZCARD', leases) - busy_valid - #free_valid
local target = math.min(want, limit - others)
local keep = math.max(0, math.min(#free_valid, target - busy_valid))
local kept = {}
for i, id in ipairs(free_valid) do
  if i <= keep then
    redis.call('ZADD', leases, 'XX', expiry, id)
    kept[#kept + 1] = id
  else
    redis.call('ZREM', leases, id)
  end
end
local granted = {}
for j = 0, target - busy_valid - keep - 1 do
  local id = proc .. ':' .. (seq + j)
  redis.call('ZADD', leases, expiry, id)
  granted[#granted + 1] = id
end

-- Held leases are renewed by this sync at the latest every lease TTL, far below the
-- keys' TTL: only an idle service's keys expire.
for _, key in ipairs({state, leases, peaks}) do redis.call('PEXPIRE', key, keys_ttl_ms) end
redis.call('ZREMRANGEBYSCORE', index, '-inf', string.format('%.17g', redis_now))
redis.call('ZADD', index, string.format('%.17g', redis_now + keys_ttl_ms / 1000), service)
return {limit, changed, lost, kept, granted, redis.call('ZCARD', leases)}
