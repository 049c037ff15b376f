-- include: _prelude.lua
-- KEYS[1] limiter; ARGV: limit slack (limit * (1 + EPSILON)), window (s), cost.
-- Mirrors ratelimit.step_sliding_window (aligned windows, weighted previous count).
-- Returns {allowed, previous, current, current window start, now}. A refused hit
-- writes nothing: the roll to a later window is recomputed from the same state.
local key = KEYS[1]
local slack, window, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local now = clock()
local state = redis.call('HMGET', key, 'previous', 'current', 'start', 'touched')
local touched = tonumber(state[4])
if touched and touched > now then
  now = touched
end
local start = math.floor(now / window) * window
local previous, current = 0, 0
local stored = tonumber(state[3])
local same = false
if stored then
  -- epoch-scale starts may differ by an ulp; aligned windows differ by a whole window
  if math.abs(stored - start) < window / 2 then
    previous, current, same = tonumber(state[1]), tonumber(state[2]), true
  elseif math.abs(stored - (start - window)) < window / 2 then
    previous = tonumber(state[2])
  end
end
local weight = 1.0 - (now - start) / window
local allowed = previous * weight + current + cost <= slack
if allowed then
  current = current + cost
  redis.call('HSET', key, 'previous', previous, 'current', current, 'start', start,
    'touched', now)
  if not same then -- within one window the expiry is already start + 2 windows
    redis.call('PEXPIREAT', key, ms(start + 2 * window))
  end
end
return {allowed and 1 or 0, previous, current, us(start), us(now)}
