package main

// The Redis queue's Lua scripts, the same text as airflow_batchjob/queues/redis_lua.py (so both
// workers load the same script SHA); tests/conformance/test_sources.py checks they are equal.

const (
	luaLease = `
local function idof(env)
  local ok, doc = pcall(cjson.decode, env)
  if ok and type(doc) == 'table' and type(doc['id']) == 'string' and type(doc['item']) == 'string' then
    return doc['id']
  end
  return 'raw-' .. string.sub(redis.sha1hex(env), 1, 16)
end

local env = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
if not env then return false end
redis.call('SET', ARGV[1] .. idof(env), ARGV[2], 'EX', tonumber(ARGV[3]))
return env
`
	luaRenew = `
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
  return 1
end
if not owner and redis.call('LPOS', KEYS[2], ARGV[3]) then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
  return 1
end
return 0
`
	luaComplete = `
local owner = redis.call('GET', KEYS[3])
if owner and owner ~= ARGV[1] then return 'lost' end
if owner then redis.call('DEL', KEYS[3]) end
local n = redis.call('LREM', KEYS[2], 1, ARGV[2])
if n == 0 then n = redis.call('LREM', KEYS[1], 1, ARGV[2]) end
if n == 0 then return 'lost' end

redis.call('INCR', KEYS[4])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[5], ARGV[3], ARGV[4]) end
return 'done'
`
	luaFail = `
local owner = redis.call('GET', KEYS[3])
if owner and owner ~= ARGV[1] then return 'lost' end
if owner then redis.call('DEL', KEYS[3]) end
local n = redis.call('LREM', KEYS[2], 1, ARGV[2])
if n == 0 then n = redis.call('LREM', KEYS[1], 1, ARGV[2]) end
if n == 0 then return 'lost' end

local attempts = redis.call('HINCRBY', KEYS[4], ARGV[3], 1)
if attempts >= tonumber(ARGV[4]) then
  redis.call('RPUSH', KEYS[5], ARGV[2])
  return 'dead'
end
redis.call('RPUSH', KEYS[1], ARGV[2])
return 'retry'
`
	luaRelease = `
local owner = redis.call('GET', KEYS[3])
if owner and owner ~= ARGV[1] then return 'lost' end
if owner then redis.call('DEL', KEYS[3]) end
local n = redis.call('LREM', KEYS[2], 1, ARGV[2])
if n == 0 then n = redis.call('LREM', KEYS[1], 1, ARGV[2]) end
if n == 0 then return 'lost' end

redis.call('LPUSH', KEYS[1], ARGV[2])
return 'released'
`
	luaReclaim = `
local function idof(env)
  local ok, doc = pcall(cjson.decode, env)
  if ok and type(doc) == 'table' and type(doc['id']) == 'string' and type(doc['item']) == 'string' then
    return doc['id']
  end
  return 'raw-' .. string.sub(redis.sha1hex(env), 1, 16)
end

local n = 0
local max = tonumber(ARGV[2])
for _, env in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  local id = idof(env)
  if redis.call('EXISTS', ARGV[1] .. id) == 0 then
    redis.call('LREM', KEYS[2], 1, env)
    local attempts = redis.call('HINCRBY', KEYS[3], id, 1)
    if max > 0 and attempts >= max then
      redis.call('RPUSH', KEYS[4], env)
    else
      redis.call('LPUSH', KEYS[1], env)
    end
    n = n + 1
  end
end
return n
`
)
