--[[ adjust: change a sku's stock on hand, then fill waiting backorders from what is free.

KEYS[1]  <base>meta        the warehouse's meta hash; its absence means Redis lost the warehouse
ARGV[1]  base              the warehouse's key base, e.g. "orderd:{main}:"
ARGV[2]  now_ms            the caller's clock (unused today; kept for the common call shape)
ARGV[3]  ops_ttl_s         how long a movement's result is kept to recognise a repeat
ARGV[4]  sku
ARGV[5]  mode              "delta": on_hand += quantity (receipt, damage, correction)
                           "set":   on_hand = quantity (cycle count)
                           "fill":  no change; only fill backorders (after a restart, or to
                                    go on where an earlier call stopped at fill_limit)
ARGV[6]  quantity          integer, -1e9..1e9 (>= 0 for "set", ignored for "fill")
ARGV[7]  movement_id       unique per movement ("delta" and "set"); for "fill", empty or one
                           that makes a repeated fill return the first one's result (the
                           fill that follows a release)
ARGV[8]  fill_limit        at most this many queued orders are examined in one call
Returns  msgpack {code, on_hand_delta, on_hand, reserved, backordered, fills, more, epoch} with
         fills = {{order_id, {{sku, quantity}, ...}}, ...}: orders whose every waiting line
         was reserved, in queue order; more = 1 when fill_limit stopped the walk with stock left;
         epoch = the warehouse's epoch from its meta hash (error results leave it out).
         A movement's result is kept under <base>move:<sku>:<movement_id>.
Codes    1 done; -1 unknown sku; -2 bad quantity; -3 bad request;
         -5 on_hand would fall below what is reserved (release or commit first);
         -6 duplicate movement id (nothing written; the stored result is returned);
         -7 the stock record is not numbers (repair with recover).
Errors   "NOMETA ..." when KEYS[1] is missing, or written under another master. Everything is validated before the first write.
Filling: orders are taken in queue order (priority, then age); an order is filled only when
every sku it waits for is free at once; one that cannot be keeps its place and the walk goes on.
]]

local DONE, UNKNOWN_SKU, BAD_QUANTITY, BAD_REQUEST, BELOW_RESERVED, DUPLICATE, CORRUPT =
  1, -1, -2, -3, -5, -6, -7
local MAX_QUANTITY = 1000000000

-- The warehouse's epoch, or nil when Redis lost the warehouse (holdings.lua).
local epoch = current_epoch(KEYS[1])
if not epoch then
  return redis.error_reply('NOMETA warehouse not initialised: ' .. KEYS[1])
end
local base, sku, mode, movement = ARGV[1], ARGV[4], ARGV[5], ARGV[7]
local ttl, quantity, limit = tonumber(ARGV[3]), tonumber(ARGV[6]), tonumber(ARGV[8])
if KEYS[1] ~= base .. 'meta' or not ttl or not limit or sku == '' then
  return cmsgpack.pack({ BAD_REQUEST, 0, 0, 0, 0, {}, 0 })
end
if mode ~= 'fill' and (not quantity or quantity % 1 ~= 0 or math.abs(quantity) > MAX_QUANTITY
    or (mode == 'set' and quantity < 0) or (mode == 'delta' and quantity == 0)) then
  return cmsgpack.pack({ BAD_QUANTITY, 0, 0, 0, 0, {}, 0 })
end
if (mode ~= 'fill' and movement == '') or not (mode == 'fill' or mode == 'set' or mode == 'delta') then
  return cmsgpack.pack({ BAD_REQUEST, 0, 0, 0, 0, {}, 0 })
end

local ON_HAND, RESERVED, WAITING = base .. 'on_hand', base .. 'reserved', base .. 'backordered'
local stock = {
  redis.call('HGET', ON_HAND, sku), redis.call('HGET', RESERVED, sku), redis.call('HGET', WAITING, sku),
}
if not stock[1] then return cmsgpack.pack({ UNKNOWN_SKU, 0, 0, 0, 0, {}, 0 }) end
local on_hand, reserved = tonumber(stock[1]), tonumber(stock[2] or '0')
if not on_hand or not reserved or not tonumber(stock[3] or '0') then
  return cmsgpack.pack({ CORRUPT, 0, 0, 0, 0, {}, 0 })
end

local move_key = base .. 'move:' .. sku .. ':' .. movement
if movement ~= '' then
  local earlier = redis.call('GET', move_key)
  if earlier then
    local result = cmsgpack.unpack(earlier)
    result[1] = DUPLICATE
    result[8] = epoch
    return cmsgpack.pack(result)
  end
end

local delta = 0
if mode == 'delta' then delta = quantity elseif mode == 'set' then delta = quantity - on_hand end
if on_hand + delta < reserved then
  local waiting = tonumber(stock[3] or '0')
  return cmsgpack.pack({ BELOW_RESERVED, delta, on_hand, reserved, waiting, {}, 0 })
end

-- Everything the fill may write, read and checked before the first write: the holdings of
-- the orders at the front of the queue (holdings.lua) and the figures of every sku they
-- wait for.
local queue = base .. 'backorders:' .. sku
local orders_key = base .. 'orders'
local waiting, holdings = {}, {}
if on_hand + delta - reserved > 0 then
  waiting = redis.call('ZRANGE', queue, 0, limit - 1)
  for i, order in ipairs(waiting) do
    local h = decode_holding(redis.call('HGET', orders_key, order))
    if not h then return cmsgpack.pack({ CORRUPT, 0, 0, 0, 0, {}, 0 }) end
    for need_sku in pairs(h.w) do
      if not tonumber(redis.call('HGET', WAITING, need_sku) or '0') then
        return cmsgpack.pack({ CORRUPT, 0, 0, 0, 0, {}, 0 })
      end
    end
    holdings[i] = h
  end
end

if delta ~= 0 then
  on_hand = redis.call('HINCRBY', ON_HAND, sku, delta)
end

-- Fill waiting orders from what is free now, in queue order.
local fills, more = {}, 0
local free = on_hand - reserved
if free > 0 then
  for i, order in ipairs(waiting) do
    if free <= 0 then break end
    local h = holdings[i]
    local names = {}
    for need_sku in pairs(h.w) do names[#names + 1] = need_sku end
    table.sort(names)
    if #names == 0 then redis.call('ZREM', queue, order) end  -- a stale entry: drop it
    local lines, fits = {}, #names > 0
    for _, need_sku in ipairs(names) do
      local need = h.w[need_sku]
      lines[#lines + 1] = { need_sku, need }
      if fits then
        local have = tonumber(redis.call('HGET', ON_HAND, need_sku) or '')
        local held = tonumber(redis.call('HGET', RESERVED, need_sku) or '0')
        fits = have ~= nil and held ~= nil and have - held >= need
      end
    end
    if fits then
      for _, line in ipairs(lines) do
        redis.call('HINCRBY', RESERVED, line[1], line[2])
        redis.call('HINCRBY', WAITING, line[1], -line[2])
        h.r[line[1]] = (h.r[line[1]] or 0) + line[2]
        redis.call('ZREM', base .. 'backorders:' .. line[1], order)
        if line[1] == sku then free = free - line[2] end
      end
      h.w = {}
      redis.call('HSET', orders_key, order, encode_holding(h))
      fills[#fills + 1] = { order, lines }
    end
  end
  if free > 0 and #waiting == limit then more = 1 end
end

local after = { redis.call('HGET', RESERVED, sku), redis.call('HGET', WAITING, sku) }
local result = {
  DONE, delta, on_hand, tonumber(after[1]), tonumber(after[2] or '0'), fills, more, epoch,
}
if movement ~= '' then redis.call('SET', move_key, cmsgpack.pack(result), 'EX', ttl) end
return cmsgpack.pack(result)
