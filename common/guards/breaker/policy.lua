-- One atomic step of a fleet-wide circuit breaker. Mirrors common/guards/breaker/policy.py
-- rule for rule (the tests run both against the same model); every number that
-- goes to Redis or back is formatted with %.17g so no precision is lost.
--
-- Time is Redis's own (TIME), so workers whose clocks disagree still agree on when
-- an open time ends or a lease lapses; a test may pass its clock as ARGV[3] instead.
-- The keys expire after ARGV[22] ms without a step (never while forced open); the
-- index of names is scored by that expiry, in Redis time, and trimmed here.
--
-- KEYS: 1 state hash, 2 window hash, 3 leases hash, 4 index of names (sorted set)
-- ARGV: 1 op (admit|record|probe|force), 2 name, 3 now ('' for Redis's clock),
--       4 u (uniform [0,1), for jitter), 5 lease id or force action, 6..16 policy,
--       17..20 batch (calls, failures, slow, weighted trailing failures) (for op=probe, ARGV[18] is 1 when
--       the trial call failed), 21 pub/sub channel, 22 TTL of the keys (ms)
-- Reply: the state after the step, the transition, the admission (store.py's StepReply)
--        and the now the step ran on
local clock = redis.call('TIME')
local redis_now = tonumber(clock[1]) + tonumber(clock[2]) / 1e6
local op, name, u, arg = ARGV[1], ARGV[2], tonumber(ARGV[4]), ARGV[5]
local now = tonumber(ARGV[3]) or redis_now
local ttl_ms = tonumber(ARGV[22])
local P = {
  threshold = tonumber(ARGV[6]), rate = tonumber(ARGV[7]), min_calls = tonumber(ARGV[8]),
  window = tonumber(ARGV[9]), slow_rate = tonumber(ARGV[10]), open = tonumber(ARGV[11]),
  open_max = tonumber(ARGV[12]), k = tonumber(ARGV[13]), lease = tonumber(ARGV[14]),
  jitter = tonumber(ARGV[15]), buckets = tonumber(ARGV[16]),
}
local calls, failures, slow, trailing = tonumber(ARGV[17]), tonumber(ARGV[18]), tonumber(ARGV[19]), tonumber(ARGV[20])

local function fmt(x) return string.format('%.17g', x) end

local s = {state = 'closed', open_until = 0, trips = 0, total_trips = 0, consecutive = 0,
           probe_successes = 0, forced = 0, reason = ''}
local raw = redis.call('HGETALL', KEYS[1])
for i = 1, #raw, 2 do s[raw[i]] = raw[i + 1] end
for _, f in ipairs({'open_until', 'trips', 'total_trips', 'consecutive', 'probe_successes', 'forced'}) do
  s[f] = tonumber(s[f])
end

-- settle: time passing
if s.state == 'open' and s.forced == 0 and now >= s.open_until then
  s.state = 'half_open'; s.probe_successes = 0
  redis.call('DEL', KEYS[3])
end
if s.state == 'half_open' then
  local leases = redis.call('HGETALL', KEYS[3])
  for i = 1, #leases, 2 do
    if tonumber(leases[i + 1]) <= now then redis.call('HDEL', KEYS[3], leases[i]) end
  end
end
local before = s.state

local changed, change_reason = false, ''
local allowed, probe, retry_in = 0, '', 0

local function fresh(state, total_trips, reason)
  return {state = state, open_until = 0, trips = 0, total_trips = total_trips, consecutive = 0,
          probe_successes = 0, forced = 0, reason = reason}
end

local function trip(reason)
  local trips = s.trips + 1
  local ceiling
  if trips - 1 > 62 then ceiling = P.open_max else ceiling = math.min(P.open_max, P.open * 2 ^ (trips - 1)) end
  local total = s.total_trips + 1
  s = fresh('open', total, reason)
  s.trips = trips
  s.open_until = now + ceiling * (1 - P.jitter * u)
  redis.call('DEL', KEYS[2], KEYS[3])
  changed = true; change_reason = reason
end

if op == 'admit' then
  if s.state == 'closed' then
    allowed = 1
  elseif s.state == 'open' then
    if s.forced == 1 then retry_in = P.open else retry_in = s.open_until - now end
  else
    if redis.call('HLEN', KEYS[3]) + s.probe_successes < P.k then
      redis.call('HSET', KEYS[3], arg, fmt(now + P.lease))
      allowed = 1; probe = arg
    else
      local soonest = nil
      for _, v in ipairs(redis.call('HVALS', KEYS[3])) do
        v = tonumber(v)
        if soonest == nil or v < soonest then soonest = v end
      end
      if soonest == nil then soonest = now + P.open end
      retry_in = math.min(P.open, soonest - now)
    end
  end
elseif op == 'record' then
  if s.state == 'closed' and calls > 0 then
    local bucket = math.floor(now / (P.window / P.buckets))
    local tc, tf, ts = calls, failures, slow
    local w = redis.call('HGETALL', KEYS[2])
    for i = 1, #w, 2 do
      local kind, b = string.sub(w[i], 1, 1), tonumber(string.sub(w[i], 3))
      if b <= bucket - P.buckets then
        redis.call('HDEL', KEYS[2], w[i])
      else
        local v = tonumber(w[i + 1])
        if kind == 'c' then tc = tc + v elseif kind == 'f' then tf = tf + v else ts = ts + v end
      end
    end
    local consecutive
    -- trailing is weighted (a timed-out call counts timeout_weight): all of them when none succeeded
    if failures < calls then consecutive = trailing else consecutive = s.consecutive + trailing end
    local reason = ''
    if P.threshold > 0 and consecutive >= P.threshold then
      reason = string.format('%d consecutive failures', consecutive)
    elseif tc >= P.min_calls then
      if P.rate > 0 and tf / tc >= P.rate then
        reason = string.format('failure rate %d/%d', tf, tc)
      elseif P.slow_rate > 0 and ts / tc >= P.slow_rate then
        reason = string.format('slow-call rate %d/%d', ts, tc)
      end
    end
    if reason ~= '' then
      trip(reason)
    else
      local b = string.format('%d', bucket)
      redis.call('HINCRBY', KEYS[2], 'c:' .. b, calls)
      redis.call('HINCRBY', KEYS[2], 'f:' .. b, failures)
      redis.call('HINCRBY', KEYS[2], 's:' .. b, slow)
      redis.call('PEXPIRE', KEYS[2], math.ceil(P.window * 2000))
      s.consecutive = consecutive
    end
  end
elseif op == 'probe' then
  if s.state == 'half_open' and redis.call('HEXISTS', KEYS[3], arg) == 1 then
    redis.call('HDEL', KEYS[3], arg)
    if failures == 1 then
      trip('trial call failed')
    else
      s.probe_successes = s.probe_successes + 1
      if s.probe_successes >= P.k then
        s = fresh('closed', s.total_trips, 'trial calls succeeded')
        redis.call('DEL', KEYS[2], KEYS[3])
        changed = true; change_reason = 'trial calls succeeded'
      end
    end
  end
elseif op == 'force' then
  if arg == 'open' then
    local trips = s.trips
    s = fresh('open', s.total_trips, 'forced open'); s.trips = trips; s.forced = 1
  elseif arg == 'close' then
    s = fresh('closed', s.total_trips, 'forced closed')
  else
    s = fresh('closed', 0, 'reset')
  end
  redis.call('DEL', KEYS[2], KEYS[3])
  changed = (before ~= 'closed') ~= (s.state ~= 'closed')
  change_reason = s.reason
else
  return redis.error_reply('unknown breaker op ' .. op)
end

if changed then s.changed_at = fmt(now) end
redis.call('HSET', KEYS[1], 'state', s.state, 'open_until', fmt(s.open_until), 'trips', fmt(s.trips),
  'total_trips', fmt(s.total_trips), 'consecutive', fmt(s.consecutive),
  'probe_successes', fmt(s.probe_successes), 'forced', fmt(s.forced), 'reason', s.reason)
if s.changed_at then redis.call('HSET', KEYS[1], 'changed_at', s.changed_at) end

-- An operator's open stands until an operator undoes it; anything else an idle
-- breaker held is forgotten after the TTL (far past its open time and leases).
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', fmt(redis_now))
if s.state == 'open' and s.forced == 1 then
  redis.call('PERSIST', KEYS[1])
  redis.call('ZADD', KEYS[4], '+inf', name)
else
  redis.call('PEXPIRE', KEYS[1], ttl_ms)
  redis.call('PEXPIRE', KEYS[3], ttl_ms)
  redis.call('ZADD', KEYS[4], fmt(redis_now + ttl_ms / 1000), name)
end

if changed or op == 'force' then
  redis.call('PUBLISH', ARGV[21], cjson.encode({name = name, state = s.state, open_until = fmt(s.open_until),
    forced = s.forced, trips = s.trips}))
end
return {s.state, fmt(s.open_until), fmt(s.trips), fmt(s.total_trips), fmt(s.consecutive), fmt(s.forced),
        changed and '1' or '0', before, change_reason, tostring(allowed), probe, fmt(retry_in),
        fmt(s.probe_successes), s.reason, fmt(now)}
