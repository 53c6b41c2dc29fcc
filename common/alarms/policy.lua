-- Alarm hysteresis, applied atomically in Redis: the twin of policy.py's
-- decide / decide_set / decide_clear (tests/integration/test_alarm_store.py
-- runs random sequences through both and demands they agree). Loaded by
-- common/alarms/store.py; run as one script so that any number of watchdogs
-- checking the same dependency at once make exactly one set and one clear.
--
-- Times are Redis's (TIME), so alarms set by workers whose clocks disagree are
-- stamped on one clock; a caller may pass its own (a test, a backdated set).
--
-- KEYS: active set, alarm hash, history stream
-- ARGV: mode (check|set|clear), id, ok (1|0), description, severity,
--       details JSON, now ('' for Redis's clock), clear_after, history_max
-- Reply: false (no transition) or {kind, description, severity, set_at, now}
local mode, id, ok = ARGV[1], ARGV[2], ARGV[3] == '1'
local description, severity, details, now = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
if now == '' then
  local clock = redis.call('TIME')
  now = string.format('%d.%06d', tonumber(clock[1]), tonumber(clock[2]))
end
local clear_after, history_max = tonumber(ARGV[8]), ARGV[9]
local is_open = redis.call('SISMEMBER', KEYS[1], id) == 1
local kind = false
if mode == 'check' then
  if not is_open then
    if not ok then kind = 'set' end
  elseif ok then
    if redis.call('HINCRBY', KEYS[2], 'passes', 1) >= clear_after then kind = 'clear' end
  else
    redis.call('HSET', KEYS[2], 'passes', 0)
  end
elseif mode == 'set' then
  if not is_open then kind = 'set' end
elseif mode == 'clear' then
  if is_open then kind = 'clear' end
end
local set_at = now
if kind == 'set' then
  redis.call('SADD', KEYS[1], id)
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[2], 'id', id, 'description', description, 'severity', severity,
             'set_at', now, 'passes', 0, 'details', details, 'last_check_at', now)
elseif kind == 'clear' then
  local stored = redis.call('HMGET', KEYS[2], 'description', 'severity', 'set_at')
  description, severity, set_at = stored[1] or description, stored[2] or severity, stored[3] or now
  redis.call('SREM', KEYS[1], id)
  redis.call('DEL', KEYS[2])
elseif is_open then
  redis.call('HSET', KEYS[2], 'details', details, 'last_check_at', now)
end
if not kind then return false end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', history_max, '*', 'alarm_id', id, 'kind', kind,
           'description', description, 'severity', severity, 'at', now, 'set_at', set_at,
           'details', details)
return {kind, description, severity, set_at, now}
