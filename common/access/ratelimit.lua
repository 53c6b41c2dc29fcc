-- One request against one key's token bucket, atomically, for every API process at once.
-- Mirrors common/access/ratelimit.py (refill + take), in the same integers: time in
-- microseconds, tokens in millionths; a Hypothesis test runs random sequences through
-- both and demands they agree. Every value stays far below 2^53, so Lua's doubles hold
-- them exactly; they are written with '%.0f' because tostring keeps only 14 digits.
--
-- Time is Redis's own (TIME), so API hosts whose clocks disagree share one bucket
-- fairly; a test may pass its clock as ARGV[1] instead.
--
-- KEYS: 1 the bucket (hash: tokens, at)
-- ARGV: 1 now in microseconds ('' for Redis's clock), 2 tokens a second (a whole number),
--       3 burst (tokens), 4 TTL of the key (ms)
-- Reply: {allowed (1 or 0), tokens left (millionths), at (microseconds), retry_us, reset_us}
local now = tonumber(ARGV[1])
if not now then
  local clock = redis.call('TIME')
  now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
end
local per_second = tonumber(ARGV[2])
local capacity = tonumber(ARGV[3]) * 1000000

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

local allowed, retry_us = 0, 0
if tokens >= 1000000 then
  tokens = tokens - 1000000
  allowed = 1
else
  retry_us = math.ceil((1000000 - tokens) / per_second)
end
local reset_us = math.ceil((capacity - tokens) / per_second)

redis.call('HSET', KEYS[1], 'tokens', string.format('%.0f', tokens),
           'at', string.format('%.0f', at))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {allowed, tokens, at, retry_us, reset_us}
