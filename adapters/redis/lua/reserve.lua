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
Returns  a flat array: the warehouse's epoch, then two items per request: replay, result.
         replay is 1 when result is the
         stored one of an earlier call with the same order and op_id, else 0; result is
         msgpack {code, lines} with lines = {{sku, wanted, reserved, backordered}, ...}, one per
         distinct sku. Results that wrote something are kept under <base>op:<order>:<op_id>.
Codes    1 reserved in full; 2 partly reserved (the rest queued, or not, per mode);
         3 queued, nothing reserved; 4 short: nothing written (modes "all" and "partial");
         -1 unknown sku (the first one is in lines); -2 bad quantity; -3 bad request;
         -7 a stock record that is not numbers (the sku is in lines; repair with recover).
Errors   "NOMETA ..." when KEYS[1] is missing; "BADBATCH ..." when ARGV cannot be read.
How      Requests are decided in order against stock read once per sku and kept in a table;
         every write happens at the end, so a script error anywhere leaves nothing written,
         and a sku many orders want costs one read and one write per call, not per order.
Invariant per sku: 0 <= reserved <= on_hand; backordered = sum of the queued quantities.
]]

local RESERVED, PARTIAL, QUEUED, SHORT = 1, 2, 3, 4
local UNKNOWN_SKU, BAD_QUANTITY, BAD_REQUEST, CORRUPT = -1, -2, -3, -7
local MAX_QUANTITY = 1000000000
local PRIORITY_STEP = 10000000000000
local MODES = { all = true, partial = true, wait_all = true, ship_available = true }
local QUEUES = { wait_all = true, ship_available = true }

-- The warehouse's epoch: it changes with every rebuild, so a ledger write can tell whether
-- the Redis state it records still exists.
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  return redis.error_reply('NOMETA warehouse not initialised: ' .. KEYS[1])
end
local base = ARGV[1]
local now = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local decoded, batch = pcall(cmsgpack.unpack, ARGV[4])
if KEYS[1] ~= base .. 'meta' or not now or not ttl or not decoded or type(batch) ~= 'table' then
  return redis.error_reply('BADBATCH reserve expects base, now_ms, ops_ttl_s, msgpack batch')
end

-- Earlier results of every well-formed request, in one round.
local op_keys, earlier = {}, {}
for i, request in ipairs(batch) do
  if type(request) == 'table' and type(request[1]) == 'string' and type(request[2]) == 'string' then
    op_keys[i] = base .. 'op:' .. request[1] .. ':' .. request[2]
  end
end
do
  local listed, at = {}, {}
  for i = 1, #batch do
    if op_keys[i] then
      listed[#listed + 1] = op_keys[i]
      at[#listed] = i
    end
  end
  for first = 1, #listed, 500 do  -- in slices: unpack() has a limit on values
    local last = math.min(first + 499, #listed)
    local found = redis.call('MGET', unpack(listed, first, last))
    for j, value in ipairs(found) do
      if value then earlier[op_keys[at[first + j - 1]]] = value end
    end
  end
end

-- sku -> {on_hand, reserved, backordered, reserved_delta, backordered_delta}, or false
-- for an unknown sku, or 'corrupt'.
local stock = {}
local function stock_of(sku)
  local s = stock[sku]
  if s == nil then
    local v = redis.call('HMGET', base .. 'stock:' .. sku, 'on_hand', 'reserved', 'backordered')
    if not v[1] then
      s = false
    else
      local on_hand, reserved, waiting = tonumber(v[1]), tonumber(v[2] or '0'), tonumber(v[3] or '0')
      if on_hand and reserved and waiting then
        s = { on_hand, reserved, waiting, 0, 0 }
      else
        s = 'corrupt'
      end
    end
    stock[sku] = s
  end
  return s
end

local writes = {}  -- {order, op_key, result, take, queue, skus, score}, applied at the end

local function is_quantity(q)
  return type(q) == 'number' and q >= 1 and q <= MAX_QUANTITY and q % 1 == 0
end

local function reserve_one(request, op_key)
  if not op_key then return 0, cmsgpack.pack({ BAD_REQUEST, {} }) end
  local order, op, mode, priority, lines = request[1], request[2], request[3], request[4], request[5]
  if order == '' or op == '' or not MODES[mode] or type(lines) ~= 'table' or #lines == 0
      or type(priority) ~= 'number' or priority < 0 or priority > 9 then
    return 0, cmsgpack.pack({ BAD_REQUEST, {} })
  end
  if earlier[op_key] then return 1, earlier[op_key] end

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
    local s = stock_of(sku)
    if s == false then
      return 0, cmsgpack.pack({ UNKNOWN_SKU, { { sku, wanted[sku], 0, 0 } } })
    elseif s == 'corrupt' then
      return 0, cmsgpack.pack({ CORRUPT, { { sku, wanted[sku], 0, 0 } } })
    end
    free[sku] = s[1] - s[2]
    if free[sku] < wanted[sku] then whole = false end
  end

  local take, queue = {}, {}
  local taken_any, queued_any = false, false
  local result_lines = {}
  for i, sku in ipairs(skus) do
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
    result_lines[i] = { sku, wanted[sku], take[sku], queue[sku] }
  end
  if not taken_any and not queued_any then
    return 0, cmsgpack.pack({ SHORT, result_lines })  -- nothing written: nothing to remember
  end

  for _, sku in ipairs(skus) do
    local s = stock[sku]
    s[2] = s[2] + take[sku]
    s[4] = s[4] + take[sku]
    s[3] = s[3] + queue[sku]
    s[5] = s[5] + queue[sku]
  end
  local code = QUEUED
  if whole then
    code = RESERVED
  elseif taken_any then
    code = PARTIAL
  end
  local result = cmsgpack.pack({ code, result_lines })
  earlier[op_key] = result  -- the same request twice in one batch is a repeat too
  writes[#writes + 1] = {
    order, op_key, result, take, queue, skus, (9 - priority) * PRIORITY_STEP + now,
  }
  return 0, result
end

local out = { epoch }
for i, request in ipairs(batch) do
  out[2 * i], out[2 * i + 1] = reserve_one(request, op_keys[i])
end

-- Every write, now that every request is decided.
for sku, s in pairs(stock) do
  if type(s) == 'table' then
    local key = base .. 'stock:' .. sku
    if s[4] ~= 0 then redis.call('HINCRBY', key, 'reserved', s[4]) end
    if s[5] ~= 0 then redis.call('HINCRBY', key, 'backordered', s[5]) end
  end
end
for _, w in ipairs(writes) do
  local order, take, queue = w[1], w[4], w[5]
  for _, sku in ipairs(w[6]) do
    if take[sku] > 0 then redis.call('HINCRBY', base .. 'res:' .. order, sku, take[sku]) end
    if queue[sku] > 0 then
      redis.call('HINCRBY', base .. 'bo:' .. order, sku, queue[sku])
      -- NX: an order queued again for the same sku keeps its place.
      redis.call('ZADD', base .. 'backorders:' .. sku, 'NX', w[7], order)
    end
  end
  redis.call('SET', w[2], w[3], 'EX', ttl)
end
return out
