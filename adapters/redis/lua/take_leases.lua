--[[ take_leases: take the lease of each order whose turn is about to run, where it is free.

A lease freed by a turn holds "~" and that turn's token until it runs out (see
release_leases): it tells the next turn which process ran the order last. A process
takes over a lease its own earlier turn of the order still holds (it runs one turn of an
order at a time, so that turn is over and only its freeing is on its way).

KEYS     <prefix>lease:<order>, one per turn
ARGV[1]  how long a lease lasts, in milliseconds
ARGV[2]  the turns' tokens, 16 characters each, one per key in the same order; the first
         10 characters name the process
Returns  one number per key: 0 when another process's turn holds the lease, 1 when it was
         taken, 2 when it was taken and this process held it last (no other process has
         run a turn of the order since).
]]

local taken = {}
for i, key in ipairs(KEYS) do
  local token = string.sub(ARGV[2], 16 * i - 15, 16 * i)
  local process = string.sub(token, 1, 10)
  local held = redis.call('GET', key)
  local result = 1
  if held then
    if string.sub(held, 1, 1) == '~' then
      if string.sub(held, 2, 11) == process then result = 2 end
    elseif string.sub(held, 1, 10) == process then
      result = 2
    else
      result = 0
    end
  end
  if result > 0 then redis.call('SET', key, token, 'PX', ARGV[1]) end
  taken[i] = result
end
return taken
