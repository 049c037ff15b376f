-- include: _prelude.lua
-- KEYS[1] a record kept whole (a rate-limit group). Returns {body or nil, now in us}:
-- the record and the server's clock read together, for a compare-and-set.
return {redis.call('GET', KEYS[1]), us(clock())}
