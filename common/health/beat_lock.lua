-- Beat leadership, applied atomically in Redis: the twin of beat_lock.py's
-- claim / release / may_write (tests/integration/test_beat_lock_model.py runs
-- random sequences through both and demands they agree). Loaded by
-- common/health/beat_store.py.
--
-- One hash holds the lease and the active beat's heartbeat, so that every step
-- touches one key (one hash slot): holder, token, expires_at, acquired_at,
-- tick_at, watchdogs_at and ran:<entry> (when the holder last sent that entry).
-- Times are Redis's (TIME), so beats and watchers whose clocks disagree judge on
-- one clock; a caller may pass its own (a test).
--
-- KEYS: the beat hash
-- ARGV: mode (claim|release|record), holder, token, ttl, now ('' for Redis's
--       clock), key_ttl (seconds the hash outlives its last write), then for
--       record the fields to stamp with now (ran:<entry>, watchdogs_at)
-- Reply: {granted (1|0), holder, token, expires_at, now}
local mode, holder, token, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local now = ARGV[5]
if now == '' then
  local clock = redis.call('TIME')
  now = string.format('%d.%06d', tonumber(clock[1]), tonumber(clock[2]))
end
local at = tonumber(now)
local stored = redis.call('HMGET', KEYS[1], 'holder', 'token', 'expires_at')
local current, current_token = stored[1] or '', tonumber(stored[2] or '0')
local expires_at = tonumber(stored[3] or '0')
local held = current ~= '' and at < expires_at
local mine = held and current == holder and current_token == token
local granted = false
if mode == 'claim' then
  if mine then
    expires_at = at + ttl
    granted = true
  elseif not held then
    current, current_token, expires_at = holder, current_token + 1, at + ttl
    redis.call('HSET', KEYS[1], 'holder', current, 'token', current_token, 'acquired_at', now)
    granted = true
  end
  if granted then
    redis.call('HSET', KEYS[1], 'expires_at', string.format('%.6f', expires_at), 'tick_at', now)
  end
elseif mode == 'release' then
  if mine then
    current, expires_at = '', at
    redis.call('HSET', KEYS[1], 'holder', '', 'expires_at', now)
    granted = true
  end
elseif mode == 'record' then
  if mine then
    for i = 7, #ARGV do
      redis.call('HSET', KEYS[1], ARGV[i], now)
    end
    granted = true
  end
end
if granted then
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[6]))
end
return {granted and 1 or 0, current, current_token, string.format('%.6f', expires_at), now}
