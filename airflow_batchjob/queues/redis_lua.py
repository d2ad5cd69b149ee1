"""The Lua scripts of the Redis queue: each moves an item between its keys in one atomic step.

Redis runs a script without interleaving other commands, so an item is never in two lists, nor
in processing without a lease, whatever a worker dies between. Used by ``queues/redis.py`` only.
"""

from __future__ import annotations

# Every script finds an envelope's id like parse_envelope does, so leases match in both languages.
LUA_ID = """
local function idof(env)
  local ok, doc = pcall(cjson.decode, env)
  if ok and type(doc) == 'table' and type(doc['id']) == 'string' and type(doc['item']) == 'string' then
    return doc['id']
  end
  return 'raw-' .. string.sub(redis.sha1hex(env), 1, 16)
end
"""

# KEYS: pending, processing. ARGV: lease key prefix, worker id, lease seconds.
# One script, so an item is never out of both lists, nor in processing without a lease.
LEASE = (
    LUA_ID
    + """
local env = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
if not env then return false end
redis.call('SET', ARGV[1] .. idof(env), ARGV[2], 'EX', tonumber(ARGV[3]))
return env
"""
)

# KEYS: lease key, processing. ARGV: worker id, lease seconds, envelope.
# An expired lease not yet reclaimed is taken back; one that another worker holds is lost.
RENEW = """
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
"""

# Shared start of complete/fail/release: leave an item another worker now holds alone; otherwise
# take it out of processing (or out of pending, where reclaim put it after our lease expired).
TAKE = """
local owner = redis.call('GET', KEYS[3])
if owner and owner ~= ARGV[1] then return 'lost' end
if owner then redis.call('DEL', KEYS[3]) end
local n = redis.call('LREM', KEYS[2], 1, ARGV[2])
if n == 0 then n = redis.call('LREM', KEYS[1], 1, ARGV[2]) end
if n == 0 then return 'lost' end
"""

# KEYS: pending, processing, lease key, done, results. ARGV: worker id, envelope, id, result.
# The result is stored with the completion, atomically: an item has a result iff it is done.
COMPLETE = (
    TAKE
    + """
redis.call('INCR', KEYS[4])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[5], ARGV[3], ARGV[4]) end
return 'done'
"""
)

# KEYS: pending, processing, lease key, attempts, dead. ARGV: worker id, envelope, id, max attempts.
FAIL = (
    TAKE
    + """
local attempts = redis.call('HINCRBY', KEYS[4], ARGV[3], 1)
if attempts >= tonumber(ARGV[4]) then
  redis.call('RPUSH', KEYS[5], ARGV[2])
  return 'dead'
end
redis.call('RPUSH', KEYS[1], ARGV[2])
return 'retry'
"""
)

# KEYS: pending, processing, lease key. ARGV: worker id, envelope. Back to the front, no attempt.
RELEASE = (
    TAKE
    + """
redis.call('LPUSH', KEYS[1], ARGV[2])
return 'released'
"""
)

# KEYS: pending, processing, attempts, dead. ARGV: lease key prefix, max attempts (0: no limit).
# A lost worker counts as an attempt, so an item that kills its worker is dead-lettered in the end.
RECLAIM = (
    LUA_ID
    + """
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
"""
)

# KEYS: pending, processing, attempts, dead, done, marker. ARGV: lease key prefix.
# Run inside the pre-fill transaction: the lease keys to drop are those of the items in flight.
RESET = (
    LUA_ID
    + """
for _, env in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  redis.call('DEL', ARGV[1] .. idof(env))
end
return redis.call('UNLINK', unpack(KEYS))  -- a big old list is freed in the background
"""
)
