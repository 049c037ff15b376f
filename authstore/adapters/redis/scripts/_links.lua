-- Magic links of one namespace live under one hash tag, ARGV[1] = '{<namespace>:links}:'
-- (or of one bucket, '<namespace>:links:{<bucket tag>}:', see _tokens.lua):
--   <tag>t:<token hash>  hash: the link (fields below), expires physically at its end;
--                        a consumed or revoked link keeps its record (consumed or
--                        revoked set) until then, so its hash stays taken
--   <tag>u:<user id>     set: the user's token hashes (revoke_previous, revoke_user)
--   <tag>p:<token hash>  the bucket of a link whose hash falls here (spread layout)
-- Scripts that read an index drop the members whose link is gone; an index expires
-- with the last link it lists.
FIELDS = {'id', 'user', 'email', 'created', 'expires', 'app', 'ip', 'agent', 'consumed'}

-- 'usable' (live, unused), 'used' (consumed or revoked, still kept) or nil (gone or over).
local function status(hash, now)
  local row = redis.call('HMGET', data_key(hash), 'expires', 'consumed', 'revoked')
  if not row[1] or tonumber(row[1]) <= now then
    return nil
  end
  if row[2] or row[3] then
    return 'used'
  end
  return 'usable'
end

-- Revoke the user's usable links (marked, kept until their expiry so their hashes stay
-- taken); the index keeps only the links still to revoke and the consumed ones.
local function revoke_unused(user, now)
  local index = index_key(user)
  local revoked = 0
  for _, hash in ipairs(redis.call('SMEMBERS', index)) do
    local state = status(hash, now)
    if state == 'usable' then
      revoked = revoked + 1
      redis.call('HSET', data_key(hash), 'revoked', now)
      redis.call('SREM', index, hash)
    elseif state == nil then
      redis.call('DEL', data_key(hash))
      redis.call('SREM', index, hash)
    end
  end
  return revoked
end
