--[[ reserve: reserve stock for a batch of orders in one warehouse.

KEYS[1]  <base>meta        the warehouse's meta hash; its absence means Redis lost the warehouse
ARGV[1]  base              the warehouse's key base, e.g. "orderd:{main}:" (KEYS[1] without "meta")
ARGV[2]  now_ms            the caller's clock; the script never reads one
ARGV[3]  window_ms         results are kept in one hash per window of this length,
                           <base>done:<now_ms // window_ms>; this window's and the last one's
                           are looked up to recognise a repeated call
ARGV[4]  skus              msgpack array of sku names: the batch's sku table
ARGV[5]  ids               msgpack array: order_id, op_id of each request, in turn
ARGV[6]  ints              msgpack array of integers, per request: mode, priority, n, then n
                           pairs (index into skus from 1, quantity), the skus distinct.
                           mode: 1 "all"            all lines or nothing; nothing is queued
                                 2 "partial"        what is free now; nothing is queued
                                 3 "wait_all"       all lines, else queue the whole order
                                 4 "ship_available" what is free now, queue the rest
                           priority 0..9 (9 first in the backorder queues)
                           op_id names the reservation ("reserve" for the order's first one; a
                           re-route after a short pick gets its own): one result per order and op_id.
Returns  a flat array: the warehouse's epoch, then per request, as its first value says:
         0, code: the lines are implied by the code (1: each got what it wanted; 3: each
                  waits for it; 4: nothing happened), then for code 2 reserved and
                  backordered per line, and for a negative code the line at fault (its
                  number from 1; 0 when none is);
         1, result: the stored result of an earlier call with the same order and op_id
                  (msgpack {code, "n", (sku, wanted) per line, then for code 2 (reserved,
                  backordered) per line}).
Codes    1 reserved in full; 2 partly reserved (the rest queued, or not, per mode);
         3 queued, nothing reserved; 4 short: nothing written (modes "all" and "partial");
         -1 unknown sku; -2 bad quantity; -3 bad request;
         -7 a stock record that is not numbers (repair with recover).
         Nothing is written for a request unless its code is 1, 2 or 3.
Errors   "NOMETA ..." when KEYS[1] is missing; "BADBATCH ..." when ARGV cannot be read.
Stock    <base>on_hand, <base>reserved, <base>backordered: HASH sku -> units; a sku with no
         on_hand field is unknown here.
Writes   the skus' reserved and backordered, once per sku; <base>orders, one field per
         order that took or queued something (JSON {"r": {sku: reserved}, "w": {sku: waiting}});
         <base>backorders:<sku> for what is queued; the result in this window's done hash.
How      Requests are decided in order against stock read once per sku and kept in a table;
         every write happens at the end, so a script error anywhere leaves nothing written,
         and a sku many orders want costs one read and one write per call, not per order.
Invariant per sku: 0 <= reserved <= on_hand; backordered = sum of the queued quantities.
]]

local RESERVED, PARTIAL, QUEUED, SHORT = 1, 2, 3, 4
local UNKNOWN_SKU, BAD_QUANTITY, BAD_REQUEST, CORRUPT = -1, -2, -3, -7
local MAX_QUANTITY = 1000000000
local PRIORITY_STEP = 10000000000000
local SLICE = 500  -- values per variadic call: unpack() has a limit

-- The warehouse's epoch: it changes with every rebuild, so a ledger write can tell whether
-- the Redis state it records still exists.
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  return redis.error_reply('NOMETA warehouse not initialised: ' .. KEYS[1])
end
local base = ARGV[1]
local now, window = tonumber(ARGV[2]), tonumber(ARGV[3])
local ok_skus, skus = pcall(cmsgpack.unpack, ARGV[4])
local ok_ids, ids = pcall(cmsgpack.unpack, ARGV[5])
local ok_ints, ints = pcall(cmsgpack.unpack, ARGV[6])
if KEYS[1] ~= base .. 'meta' or not now or not window or window < 1 or not ok_skus
    or not ok_ids or not ok_ints or type(skus) ~= 'table' or type(ids) ~= 'table'
    or type(ints) ~= 'table' or #ids % 2 ~= 0 then
  return redis.error_reply('BADBATCH reserve expects base, now_ms, window_ms, skus, ids, ints')
end
local count = #ids / 2
local done_key = base .. 'done:' .. math.floor(now / window)
local last_key = base .. 'done:' .. (math.floor(now / window) - 1)

local function call_sliced(command, key, values, step)
  for first = 1, #values, step do
    redis.call(command, key, unpack(values, first, math.min(first + step - 1, #values)))
  end
end

-- Earlier results of every request, in two rounds.
local fields = {}
for i = 1, count do
  fields[i] = tostring(ids[2 * i - 1]) .. ' ' .. tostring(ids[2 * i])
end
local earlier = {}
for _, key in ipairs({ done_key, last_key }) do
  for first = 1, count, SLICE do
    local last = math.min(first + SLICE - 1, count)
    local found = redis.call('HMGET', key, unpack(fields, first, last))
    for j = 1, last - first + 1 do
      if found[j] and not earlier[first + j - 1] then earlier[first + j - 1] = found[j] end
    end
  end
end

-- sku index -> {on_hand, reserved, backordered, reserved_delta, backordered_delta}, or false
-- for an unknown sku, or 'corrupt': every sku of the batch read at once, three fields each.
local stock = {}
do
  local columns = {}
  for c, name in ipairs({ 'on_hand', 'reserved', 'backordered' }) do
    local column = {}
    for first = 1, #skus, SLICE do
      local last = math.min(first + SLICE - 1, #skus)
      local found = redis.call('HMGET', base .. name, unpack(skus, first, last))
      for j = 1, last - first + 1 do column[first + j - 1] = found[j] end
    end
    columns[c] = column
  end
  for index = 1, #skus do
    local sku = skus[index]
    if type(sku) ~= 'string' or sku == '' or not columns[1][index] then
      stock[index] = false
    else
      local on_hand = tonumber(columns[1][index])
      local reserved = tonumber(columns[2][index] or '0')
      local waiting = tonumber(columns[3][index] or '0')
      if on_hand and reserved and waiting then
        stock[index] = { on_hand, reserved, waiting, 0, 0 }
      else
        stock[index] = 'corrupt'
      end
    end
  end
end
local function stock_of(index)
  local s = stock[index]
  if s == nil then return false end  -- an index outside the table
  return s
end

local out = { epoch }
local function refuse(code, at_fault)
  out[#out + 1] = 0
  out[#out + 1] = code
  out[#out + 1] = at_fault or 0
end

-- A stored result names its lines, so that a repeat gets the first result whatever lines
-- it asks for: {code, 'n', (sku, wanted) per line}, then for code 2 (reserved, backordered)
-- per line. A rebuild from the ledger writes the same form.
local function replay(stored)
  out[#out + 1] = 1
  out[#out + 1] = stored
end

local function is_quantity(q)
  return type(q) == 'number' and q >= 1 and q <= MAX_QUANTITY and q % 1 == 0
end

-- {"r": {sku: reserved}, "w": {sku: waiting}}, each part left out when empty.
local function encode_holding(h)
  local parts = {}
  if next(h.r) ~= nil then parts.r = h.r end
  if next(h.w) ~= nil then parts.w = h.w end
  return cjson.encode(parts)
end

-- Per order that wrote: {request index, lines {index, take, queue}..., score}.
local writes = {}
local seen_here = {}  -- the same order and op twice in one batch is a repeat too
local pos = 1
for i = 1, count do
  local mode, priority, n = ints[pos], ints[pos + 1], ints[pos + 2]
  local lines_at = pos + 3
  if type(n) ~= 'number' or n < 0 or n % 1 ~= 0 or lines_at + 2 * n - 1 > #ints then
    return redis.error_reply('BADBATCH reserve: request ' .. i .. ' runs past the integers')
  end
  pos = lines_at + 2 * n
  local order, op = ids[2 * i - 1], ids[2 * i]
  local stored = earlier[i] or seen_here[fields[i]]
  if type(order) ~= 'string' or order == '' or type(op) ~= 'string' or op == '' or n == 0
      or type(mode) ~= 'number' or mode < 1 or mode > 4 or type(priority) ~= 'number'
      or priority < 0 or priority > 9 or priority % 1 ~= 0 then
    refuse(BAD_REQUEST)
  elseif stored then
    replay(stored)
  else
    local code, at_fault, whole, distinct = nil, nil, true, {}
    for k = 0, n - 1 do
      local index, quantity = ints[lines_at + 2 * k], ints[lines_at + 2 * k + 1]
      if not is_quantity(quantity) or type(index) ~= 'number' or distinct[index] then
        code = code or BAD_QUANTITY
      else
        distinct[index] = true
        local s = stock_of(index)
        if s == false then
          code, at_fault = code or UNKNOWN_SKU, at_fault or k + 1
        elseif s == 'corrupt' then
          code, at_fault = code or CORRUPT, at_fault or k + 1
        elseif s[1] - s[2] < quantity then
          whole = false
        end
      end
    end
    if code then
      refuse(code, at_fault)
    else
      local lines, taken_any, queued_any = {}, false, false
      for k = 0, n - 1 do
        local index, quantity = ints[lines_at + 2 * k], ints[lines_at + 2 * k + 1]
        local s = stock[index]
        local take = 0
        if whole then
          take = quantity
        elseif mode == 2 or mode == 4 then
          take = math.max(0, math.min(quantity, s[1] - s[2]))
        end
        local queue = (mode >= 3) and (quantity - take) or 0
        taken_any = taken_any or take > 0
        queued_any = queued_any or queue > 0
        lines[k + 1] = { index, take, queue }
      end
      if not taken_any and not queued_any then
        out[#out + 1] = 0  -- nothing written: nothing to remember
        out[#out + 1] = SHORT
      else
        local code = whole and RESERVED or (taken_any and PARTIAL or QUEUED)
        local result = { code, 'n' }
        for k = 0, n - 1 do
          result[3 + 2 * k] = skus[ints[lines_at + 2 * k]]
          result[4 + 2 * k] = ints[lines_at + 2 * k + 1]
        end
        out[#out + 1] = 0
        out[#out + 1] = code
        for _, line in ipairs(lines) do
          local s = stock[line[1]]
          s[2], s[4] = s[2] + line[2], s[4] + line[2]
          s[3], s[5] = s[3] + line[3], s[5] + line[3]
          -- Only a partial result says what each line got: the others say it by their code.
          if code == PARTIAL then
            out[#out + 1], out[#out + 2] = line[2], line[3]
            result[#result + 1], result[#result + 2] = line[2], line[3]
          end
        end
        local packed = cmsgpack.pack(result)
        seen_here[fields[i]] = packed
        lines.score = (9 - priority) * PRIORITY_STEP + now
        writes[#writes + 1] = { i, lines, packed }
      end
    end
  end
end

-- Every write, now that every request is decided: each sku's new figures in one call per
-- field (the script runs alone, so what it read is still what is there).
do
  local reserved, waiting = {}, {}
  for index, s in pairs(stock) do
    if type(s) == 'table' then
      if s[4] ~= 0 then
        reserved[#reserved + 1] = skus[index]
        reserved[#reserved + 1] = s[2]
      end
      if s[5] ~= 0 then
        waiting[#waiting + 1] = skus[index]
        waiting[#waiting + 1] = s[3]
      end
    end
  end
  call_sliced('HSET', base .. 'reserved', reserved, 2 * SLICE)
  call_sliced('HSET', base .. 'backordered', waiting, 2 * SLICE)
end
if #writes > 0 then
  local orders_key = base .. 'orders'
  local names = {}
  for j, w in ipairs(writes) do names[j] = ids[2 * w[1] - 1] end
  local held = {}
  for first = 1, #names, SLICE do
    local found = redis.call('HMGET', orders_key, unpack(names, first, math.min(first + SLICE - 1, #names)))
    for j, value in ipairs(found) do held[first + j - 1] = value end
  end
  local holding, touched, results, queues = {}, {}, {}, {}
  for j, w in ipairs(writes) do
    local order, lines = names[j], w[2]
    -- An order's holding here: what it already held (an earlier reservation), plus this one.
    local h = holding[order]
    if not h then
      h = (held[j] and cjson.decode(held[j])) or {}
      h.r, h.w = h.r or {}, h.w or {}
      holding[order] = h
      touched[#touched + 1] = order
    end
    for _, line in ipairs(lines) do
      local sku = skus[line[1]]
      if line[2] > 0 then h.r[sku] = (h.r[sku] or 0) + line[2] end
      if line[3] > 0 then
        h.w[sku] = (h.w[sku] or 0) + line[3]
        local queue = queues[sku]
        if not queue then queue = {}; queues[sku] = queue end
        queue[#queue + 1] = lines.score
        queue[#queue + 1] = order
      end
    end
    results[#results + 1] = fields[w[1]]
    results[#results + 1] = w[3]
  end
  local holdings = {}
  for _, order in ipairs(touched) do
    holdings[#holdings + 1] = order
    holdings[#holdings + 1] = encode_holding(holding[order])
  end
  call_sliced('HSET', orders_key, holdings, 2 * SLICE)
  call_sliced('HSET', done_key, results, 2 * SLICE)
  redis.call('PEXPIRE', done_key, 2 * window + 60000)
  for sku, queue in pairs(queues) do
    -- NX: an order queued again for the same sku keeps its place.
    local key = base .. 'backorders:' .. sku
    for first = 1, #queue, 2 * SLICE do
      redis.call('ZADD', key, 'NX', unpack(queue, first, math.min(first + 2 * SLICE - 1, #queue)))
    end
  end
end
return out
