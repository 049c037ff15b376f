-- include: _prelude.lua, _tokens.lua, _sessions.lua
-- ARGV: prefix, token hash ('' = look it up by public id), public id, owner ('' = any).
-- 1 when a live session was revoked; {bucket} when it lives in that bucket.
local hash = ARGV[2]
if hash == '' then
  hash = redis.call('GET', prefix .. 'i:' .. ARGV[3])
  if not hash then
    return redirect(prefix .. 'q:' .. ARGV[3]) or 0
  end
end
local user = live_user(hash, clock())
if not user and ARGV[2] ~= '' then
  return redirect(pointer_key(hash)) or 0
end
if not user or (ARGV[4] ~= '' and user ~= ARGV[4]) then
  return 0
end
revoke(hash, user, clock())
return 1
