--[[ take_leases: take the lease of each order whose turn is about to run, where it is free.

KEYS     <prefix>lease:<order>, one per turn
ARGV[1]  how long a lease lasts, in milliseconds
ARGV[2]  the turns' tokens, 16 characters each, one per key in the same order
Returns  one number per key: 1 when the lease was taken, 0 when another turn holds it.
]]

local taken = {}
for i, key in ipairs(KEYS) do
  local token = string.sub(ARGV[2], 16 * i - 15, 16 * i)
  taken[i] = redis.call('SET', key, token, 'NX', 'PX', ARGV[1]) and 1 or 0
end
return taken
