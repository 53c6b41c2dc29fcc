-- Admit one receiver to the services shown by name while there is room, atomically,
-- so that processes racing for the last place never take more than the limit.
-- Mirrors common/health/named_services.py (admit); a test runs both on the same
-- sequences and demands they agree.
--
-- KEYS: 1 sorted set of the named receivers
-- ARGV: 1 receiver, 2 most names (METRICS_MAX_SERVICES)
-- Reply: {1 if the receiver is named now, else 0; how many are named}
local named = KEYS[1]
local service = ARGV[1]
local most = tonumber(ARGV[2])

if redis.call('ZSCORE', named, service) then
  return {1, redis.call('ZCARD', named)}
end
local count = redis.call('ZCARD', named)
if count < most then
  redis.call('ZADD', named, 0, service)
  return {1, count + 1}
end
return {0, count}
