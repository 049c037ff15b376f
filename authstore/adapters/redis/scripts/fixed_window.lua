-- KEYS[1] limiter (the count; its expiry is the window's end); ARGV: limit, window in
-- ms, cost. Mirrors ratelimit.step_fixed_window: the window starts at the first hit
-- and ends when the key expires (millisecond precision), so no clock is read.
-- Returns {allowed, count, ms left in the window}. A refused hit writes nothing.
local key = KEYS[1]
local limit, cost = tonumber(ARGV[1]), tonumber(ARGV[3])
local left = redis.call('PTTL', key)
local count = 0
if left > 0 then
  count = tonumber(redis.call('GET', key))
else
  left = tonumber(ARGV[2]) -- a new window (no key, or one about to expire)
end
if count + cost > limit then
  return {0, count, left}
end
if count == 0 then
  redis.call('SET', key, cost, 'PX', left)
else
  redis.call('INCRBY', key, cost)
end
return {1, count + cost, left}
