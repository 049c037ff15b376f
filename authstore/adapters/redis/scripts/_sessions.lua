-- Sessions of one namespace live under one hash tag, ARGV[1] = '{<namespace>:sessions}:'
-- (or of one bucket, '<namespace>:sessions:{<bucket tag>}:', see _tokens.lua):
--   <tag>t:<token hash>  hash: the session (fields below), expires physically at its end
--   <tag>u:<user id>     sorted set: the user's token hashes by creation order (index)
--   <tag>i:<public id>   the token hash of a public id (revoke_by_id)
--   <tag>seq             creation counter (orders sessions created in one microsecond)
--   <tag>r:<token hash>  a revoked session's hash, kept until the session would have
--                        expired: a caller-supplied token can never revive it
--   <tag>p:<token hash>  the bucket of a session whose hash falls here (spread layout)
--   <tag>q:<public id>   the bucket of a session whose public id falls here (migrated)
-- Every script that reads an index drops the members whose session is gone or over,
-- and an index expires with the last session it lists.
FIELDS = {'id', 'user', 'created', 'seen', 'expires', 'device', 'app', 'ip', 'agent', 'meta'}

-- The session's user when it is live at `now`, else nil.
local function live_user(hash, now)
  local row = redis.call('HMGET', data_key(hash), 'user', 'expires')
  if row[1] and tonumber(row[2]) > now then
    return row[1]
  end
  return nil
end

local function drop(hash, user)
  local key = data_key(hash)
  local public_id = redis.call('HGET', key, 'id')
  redis.call('DEL', key)
  if public_id then
    redis.call('DEL', prefix .. 'i:' .. public_id)
  end
  redis.call('ZREM', index_key(user), hash)
end

-- Revoke a live session: drop it, keeping its hash taken until its expiry.
local function revoke(hash, user, now)
  local expires = tonumber(redis.call('HGET', data_key(hash), 'expires'))
  if expires and expires > now then
    redis.call('SET', prefix .. 'r:' .. hash, '1', 'PXAT', ms(expires))
  end
  drop(hash, user)
end

-- The hash is taken here: a live or revoked session, or a pointer to another bucket.
local function taken(hash, now)
  return live_user(hash, now) or redis.call('EXISTS', prefix .. 'r:' .. hash) == 1
    or redis.call('EXISTS', pointer_key(hash)) == 1
end

-- The user's live sessions, newest first; stale members leave the index on the way.
local function live_hashes(user, now)
  local index = index_key(user)
  local found = {}
  for _, hash in ipairs(redis.call('ZREVRANGE', index, 0, -1)) do
    if live_user(hash, now) then
      found[#found + 1] = hash
    else
      drop(hash, user)
    end
  end
  return found
end
