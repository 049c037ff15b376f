-- include: _prelude.lua, _tokens.lua, _sessions.lua
-- ARGV: prefix, token hash. The session, or false when missing or over ({bucket}: it
-- lives in that bucket).
local hash = ARGV[2]
if not live_user(hash, clock()) then
  return redirect(pointer_key(hash)) or false
end
return record(data_key(hash))
