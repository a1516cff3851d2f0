--[[ commit: shipped stock leaves the building, for a batch of orders in one warehouse.

KEYS[1]  <base>meta        the warehouse's meta hash; its absence means Redis lost the warehouse
ARGV[1]  base              the warehouse's key base, e.g. "orderd:{main}:"
ARGV[2]  now_ms            the caller's clock; the script never reads one
ARGV[3]  window_ms         results are kept in <base>done:<now_ms // window_ms> (see reserve.lua)
ARGV[4]  batch             msgpack array of requests {order_id, op_id, lines}, where
                           lines = {{sku, quantity}, ...} is what the shipment holds; each
                           quantity must be reserved for the order.
Returns  a flat array: the warehouse's epoch, then two items per request: replay, result.
         replay is 1 when result is the
         stored one of an earlier call with the same order and op_id; result is msgpack
         {code, committed} with committed = {{sku, quantity}, ...}: on_hand and reserved both
         went down by it.
Codes    1 done; -2 bad quantity; -3 bad request; -4 more than the order holds;
         -7 a stock record that is not numbers. Nothing is written unless the code is 1.
Errors   "NOMETA ..." when KEYS[1] is missing, or written under another master; "BADBATCH ..." when ARGV cannot be read.
]]

local DONE, BAD_QUANTITY, BAD_REQUEST, NOT_HELD, CORRUPT = 1, -2, -3, -4, -7
local MAX_QUANTITY = 1000000000

-- The warehouse's epoch, or nil when Redis lost the warehouse (holdings.lua).
local epoch = current_epoch(KEYS[1])
if not epoch then
  return redis.error_reply('NOMETA warehouse not initialised: ' .. KEYS[1])
end
local base = ARGV[1]
local now, window = tonumber(ARGV[2]), tonumber(ARGV[3])
local decoded, batch = pcall(cmsgpack.unpack, ARGV[4])
if KEYS[1] ~= base .. 'meta' or not now or not window or window < 1 or not decoded
    or type(batch) ~= 'table' then
  return redis.error_reply('BADBATCH commit expects base, now_ms, window_ms, msgpack batch')
end
local orders_key = base .. 'orders'
local done_key = base .. 'done:' .. math.floor(now / window)
local last_key = base .. 'done:' .. (math.floor(now / window) - 1)
-- A window's hash is looked up until the next window ends; kept a minute past that (in
-- the caller's time, which a test or demo clock may set apart from Redis's).
local done_until = (math.floor(now / window) + 2) * window + 60000

local function commit_one(request)
  if type(request) ~= 'table' then return 0, cmsgpack.pack({ BAD_REQUEST, {} }) end
  local order, op, lines = request[1], request[2], request[3]
  if type(order) ~= 'string' or order == '' or type(op) ~= 'string' or op == ''
      or type(lines) ~= 'table' or #lines == 0 then
    return 0, cmsgpack.pack({ BAD_REQUEST, {} })
  end
  local field = order .. ' ' .. op
  local earlier = redis.call('HGET', done_key, field) or redis.call('HGET', last_key, field)
  if earlier then return 1, earlier end

  local h = decode_holding(redis.call('HGET', orders_key, order))
  if not h then return 0, cmsgpack.pack({ CORRUPT, {} }) end
  local wanted, skus = {}, {}
  for _, line in ipairs(lines) do
    local sku, quantity = line[1], line[2]
    if type(sku) ~= 'string' or type(quantity) ~= 'number' or quantity < 1
        or quantity > MAX_QUANTITY or quantity % 1 ~= 0 then
      return 0, cmsgpack.pack({ BAD_QUANTITY, {} })
    end
    if not wanted[sku] then
      skus[#skus + 1] = sku
      wanted[sku] = 0
    end
    wanted[sku] = wanted[sku] + quantity
  end
  local committed = {}
  for i, sku in ipairs(skus) do
    if (h.r[sku] or 0) < wanted[sku] then
      return 0, cmsgpack.pack({ NOT_HELD, { { sku, wanted[sku] } } })
    end
    committed[i] = { sku, wanted[sku] }
  end

  -- Every stock record written below must hold numbers, or the script would stop half way.
  for _, line in ipairs(committed) do
    local on_hand = redis.call('HGET', base .. 'on_hand', line[1])
    local reserved = redis.call('HGET', base .. 'reserved', line[1])
    if not tonumber(on_hand or '0') or not tonumber(reserved or '0') then
      return 0, cmsgpack.pack({ CORRUPT, { { line[1], line[2] } } })
    end
  end

  for _, line in ipairs(committed) do
    redis.call('HINCRBY', base .. 'on_hand', line[1], -line[2])
    redis.call('HINCRBY', base .. 'reserved', line[1], -line[2])
    local left = h.r[line[1]] - line[2]
    h.r[line[1]] = (left > 0) and left or nil
  end
  keep_holding(orders_key, order, h)

  local result = cmsgpack.pack({ DONE, committed })
  redis.call('HSET', done_key, field, result)
  redis.call('PEXPIRE', done_key, done_until - now)
  return 0, result
end

local out = { epoch }
for i, request in ipairs(batch) do
  out[2 * i], out[2 * i + 1] = commit_one(request)
end
return out
