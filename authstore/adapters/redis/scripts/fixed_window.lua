-- KEYS[1] limiter; ARGV: limit, window (s), cost. Mirrors ratelimit.step_fixed_window.
-- Returns {allowed, count, window end, now}. A refused hit writes nothing.
local key = KEYS[1]
local limit, window, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local now = clock()
local state = redis.call('HMGET', key, 'count', 'end', 'touched')
local touched = tonumber(state[3])
if touched and touched > now then
  now = touched -- a limiter's clock never runs backwards
end
local count, finish = tonumber(state[1]), tonumber(state[2])
if count == nil or finish == nil or finish <= now then
  count, finish = 0, now + window
end
local allowed = count + cost <= limit
if allowed then
  count = count + cost
  redis.call('HSET', key, 'count', count, 'end', num(finish), 'touched', num(now))
  redis.call('PEXPIREAT', key, ms(finish))
end
return {allowed and 1 or 0, count, num(finish), num(now)}
