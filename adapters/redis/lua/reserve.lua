--[[ reserve: reserve stock for a batch of orders in one warehouse.

KEYS[1]  <base>meta        the warehouse's meta hash; its absence means Redis lost the warehouse
ARGV[1]  base              the warehouse's key base, e.g. "orderd:{main}:" (KEYS[1] without "meta")
ARGV[2]  now_ms            the caller's clock; the script never reads one
ARGV[3]  ops_ttl_s         how long an operation's result is kept to recognise a repeated call
ARGV[4]  batch             msgpack array of requests {order_id, op_id, mode, priority, lines}, where
                           lines = {{sku, quantity}, ...}; a sku may repeat (summed);
                           mode: "all"            all lines or nothing; nothing is queued
                                 "partial"        what is free now; nothing is queued
                                 "wait_all"       all lines, else queue the whole order
                                 "ship_available" what is free now, queue the rest
                           priority 0..9 (9 first in the backorder queues)
                           op_id names the reservation ("reserve" for the order's first one; a
                           re-route after a short pick gets its own): one result per order and op_id.
Returns  a flat array, two items per request: replay, result. replay is 1 when result is the
         stored one of an earlier call with the same order and op_id, else 0; result is
         msgpack {code, lines} with lines = {{sku, wanted, reserved, backordered}, ...}, one per
         distinct sku. Results that wrote something are kept under <base>op:<order>:<op_id>.
Codes    1 reserved in full; 2 partly reserved (the rest queued, or not, per mode);
         3 queued, nothing reserved; 4 short: nothing written (modes "all" and "partial");
         -1 unknown sku (the first one is in lines); -2 bad quantity; -3 bad request;
         -7 a stock record that is not numbers (the sku is in lines; repair with recover).
Errors   "NOMETA ..." when KEYS[1] is missing; "BADBATCH ..." when ARGV cannot be read.
         Every request is validated before anything is written for it, and a script error
         is raised before the first write, so nothing is ever left half done.
Invariant per sku: 0 <= reserved <= on_hand; backordered = sum of the queued quantities.
]]

local RESERVED, PARTIAL, QUEUED, SHORT = 1, 2, 3, 4
local UNKNOWN_SKU, BAD_QUANTITY, BAD_REQUEST, CORRUPT = -1, -2, -3, -7
local MAX_QUANTITY = 1000000000
local PRIORITY_STEP = 10000000000000
local MODES = { all = true, partial = true, wait_all = true, ship_available = true }
local QUEUES = { wait_all = true, ship_available = true }

if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('NOMETA warehouse not initialised: ' .. KEYS[1])
end
local base = ARGV[1]
local now = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local decoded, batch = pcall(cmsgpack.unpack, ARGV[4])
if KEYS[1] ~= base .. 'meta' or not now or not ttl or not decoded or type(batch) ~= 'table' then
  return redis.error_reply('BADBATCH reserve expects base, now_ms, ops_ttl_s, msgpack batch')
end

local function is_quantity(q)
  return type(q) == 'number' and q >= 1 and q <= MAX_QUANTITY and q % 1 == 0
end

local function reserve_one(request)
  if type(request) ~= 'table' then return 0, cmsgpack.pack({ BAD_REQUEST, {} }) end
  local order, op, mode, priority, lines = request[1], request[2], request[3], request[4], request[5]
  if type(order) ~= 'string' or order == '' or type(op) ~= 'string' or op == ''
      or not MODES[mode] or type(lines) ~= 'table' or #lines == 0
      or type(priority) ~= 'number' or priority < 0 or priority > 9 then
    return 0, cmsgpack.pack({ BAD_REQUEST, {} })
  end

  local op_key = base .. 'op:' .. order .. ':' .. op
  local earlier = redis.call('GET', op_key)
  if earlier then return 1, earlier end

  -- Sum the lines per sku, keeping the order in which skus first appear.
  local skus, wanted = {}, {}
  for _, line in ipairs(lines) do
    local sku, quantity = line[1], line[2]
    if type(sku) ~= 'string' or sku == '' or not is_quantity(quantity) then
      return 0, cmsgpack.pack({ BAD_QUANTITY, {} })
    end
    if not wanted[sku] then
      skus[#skus + 1] = sku
      wanted[sku] = 0
    end
    wanted[sku] = wanted[sku] + quantity
    if wanted[sku] > MAX_QUANTITY then return 0, cmsgpack.pack({ BAD_QUANTITY, {} }) end
  end

  local free, whole = {}, true
  for _, sku in ipairs(skus) do
    local stock = redis.call('HMGET', base .. 'stock:' .. sku, 'on_hand', 'reserved', 'backordered')
    if not stock[1] then
      return 0, cmsgpack.pack({ UNKNOWN_SKU, { { sku, wanted[sku], 0, 0 } } })
    end
    local on_hand, reserved = tonumber(stock[1]), tonumber(stock[2] or '0')
    if not on_hand or not reserved or not tonumber(stock[3] or '0') then
      return 0, cmsgpack.pack({ CORRUPT, { { sku, wanted[sku], 0, 0 } } })
    end
    free[sku] = on_hand - reserved
    if free[sku] < wanted[sku] then whole = false end
  end

  local take, queue = {}, {}
  local taken_any, queued_any = false, false
  for _, sku in ipairs(skus) do
    if whole then
      take[sku] = wanted[sku]
    elseif mode == 'partial' or mode == 'ship_available' then
      take[sku] = math.max(0, math.min(wanted[sku], free[sku]))
    else
      take[sku] = 0
    end
    queue[sku] = QUEUES[mode] and (wanted[sku] - take[sku]) or 0
    taken_any = taken_any or take[sku] > 0
    queued_any = queued_any or queue[sku] > 0
  end

  local result_lines = {}
  for i, sku in ipairs(skus) do
    result_lines[i] = { sku, wanted[sku], take[sku], queue[sku] }
  end
  if not taken_any and not queued_any then
    return 0, cmsgpack.pack({ SHORT, result_lines })  -- nothing written: nothing to remember
  end

  local score = (9 - priority) * PRIORITY_STEP + now
  for _, sku in ipairs(skus) do
    local stock = base .. 'stock:' .. sku
    if take[sku] > 0 then
      redis.call('HINCRBY', stock, 'reserved', take[sku])
      redis.call('HINCRBY', base .. 'res:' .. order, sku, take[sku])
    end
    if queue[sku] > 0 then
      redis.call('HINCRBY', stock, 'backordered', queue[sku])
      redis.call('HINCRBY', base .. 'bo:' .. order, sku, queue[sku])
      -- NX: an order queued again for the same sku keeps its place.
      redis.call('ZADD', base .. 'backorders:' .. sku, 'NX', score, order)
    end
  end

  local code = QUEUED
  if whole then
    code = RESERVED
  elseif taken_any then
    code = PARTIAL
  end
  local result = cmsgpack.pack({ code, result_lines })
  redis.call('SET', op_key, result, 'EX', ttl)
  return 0, result
end

local out = {}
for i, request in ipairs(batch) do
  out[2 * i - 1], out[2 * i] = reserve_one(request)
end
return out
