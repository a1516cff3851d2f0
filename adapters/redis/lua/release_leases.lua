--[[ release_leases: give up the leases of orders whose turns ended, but only those the
turns took.

A freed lease is not deleted: it holds "~" and the token for ARGV[2] milliseconds, so the
process's next turn of the order knows nobody else ran one since (see take_leases). Any
turn may take a freed lease.

KEYS     <prefix>lease:<order>, one per turn
ARGV[1]  the tokens the turns set when they took the leases, 16 characters each, one per
         key in the same order
ARGV[2]  how long a freed lease is remembered, in milliseconds
Returns  how many leases were ours and are free now. A lease that had expired, and that
         someone else (or no one) holds now, is left as it is.
]]

local freed = 0
for i, key in ipairs(KEYS) do
  local token = string.sub(ARGV[1], 16 * i - 15, 16 * i)
  if redis.call('GET', key) == token then
    redis.call('SET', key, '~' .. token, 'PX', ARGV[2])
    freed = freed + 1
  end
end
return freed
