--[[ hold_lease: take a lease that one process at a time holds (not an order's), or keep
the one this process holds already.

KEYS[1]  the lease, e.g. <prefix>stock_push
ARGV[1]  this process's token
ARGV[2]  how long the lease lasts from now on, in milliseconds
Returns  1 when the lease is this process's and lasts ARGV[2] again, 0 when another
         process holds it.
]]

local holder = redis.call('GET', KEYS[1])
if holder == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
