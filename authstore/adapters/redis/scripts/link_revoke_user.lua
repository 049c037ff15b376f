-- include: _prelude.lua, _tokens.lua, _links.lua
-- ARGV: prefix, user. How many usable links were revoked.
return revoke_unused(ARGV[2], clock())
