-- One delivery's reservation of its endpoint's next send slot, atomically, for the whole
-- fleet. Mirrors common/delivery/rate_slots.py (refill + reserve) in the same integers:
-- time in microseconds, tokens in millionths; a Hypothesis test runs random sequences
-- through both and demands they agree. Values stay far below 2^53, so Lua's doubles hold
-- them exactly; they are written with '%.0f' because tostring keeps only 14 digits.
--
-- Time is Redis's own (TIME), so workers whose clocks disagree share one bucket fairly;
-- a test may pass its clock as ARGV[1] instead.
--
-- KEYS: 1 the bucket (hash: tokens, at; tokens may be negative: reserved slots)
-- ARGV: 1 now in microseconds ('' for Redis's clock), 2 slots a second (a whole number),
--       3 burst (slots), 4 horizon (microseconds), 5 TTL of the key (ms)
-- Reply: {granted (1 or 0), wait_us, tokens (millionths), at (microseconds), now}
local now = tonumber(ARGV[1])
if not now then
  local clock = redis.call('TIME')
  now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
end
local per_second = tonumber(ARGV[2])
local capacity = tonumber(ARGV[3]) * 1000000
local horizon = tonumber(ARGV[4])

-- A missing bucket is a full one (never used, or its key expired once it was full).
local tokens, at = capacity, now
local stored = redis.call('HMGET', KEYS[1], 'tokens', 'at')
if stored[1] and stored[2] then
  tokens, at = tonumber(stored[1]), tonumber(stored[2])
  -- A clock that went back adds nothing and does not move `at` back.
  local elapsed = math.max(0, now - at)
  tokens = math.min(capacity, tokens + elapsed * per_second)
  at = math.max(at, now)
end

local after = tokens - 1000000
local wait_us = math.ceil(math.max(0, -after) / per_second)
if wait_us > horizon then
  return {0, wait_us - horizon, string.format('%.0f', tokens), string.format('%.0f', at), now}
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.0f', after),
           'at', string.format('%.0f', at))
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {1, wait_us, string.format('%.0f', after), string.format('%.0f', at), now}
