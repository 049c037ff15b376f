-- include: _prelude.lua
-- KEYS[1] limiter; ARGV: limit, window (s), cost, window slack (window * (1 + EPSILON)).
-- Mirrors ratelimit.step_gcra: the state is an anchor instant plus whole units, so
-- no float drift accumulates. Returns {allowed, anchor, units, now}. The state is
-- written even when refused: a reset or a clamp after a lowered limit must stick.
local key = KEYS[1]
local limit, window, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local slack = tonumber(ARGV[4])
local now = clock()
local state = redis.call('HMGET', key, 'anchor', 'units', 'touched')
local touched = tonumber(state[3])
if touched and touched > now then
  now = touched
end
local anchor, units = tonumber(state[1]), tonumber(state[2])
if anchor == nil or units == nil then
  anchor, units = now, 0
end
local backlog = units * window / limit - (now - anchor)
if backlog <= 0 then
  anchor, units = now, 0
elseif backlog > window then
  anchor, units = now, limit -- the limit or window was lowered: one window behind at most
end
local after = (units + cost) * window / limit - (now - anchor)
local allowed = after <= slack
if allowed then
  units = units + cost
end
redis.call('HSET', key, 'anchor', anchor, 'units', units, 'touched', now)
redis.call('PEXPIREAT', key, ms(anchor + units * window / limit + window))
return {allowed and 1 or 0, us(anchor), units, us(now)}
