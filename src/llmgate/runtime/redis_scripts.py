"""The Lua scripts behind ``RedisCounters``: one per operation, so each is atomic in Redis
whatever the number of clients.  Each takes one key (already prefixed by the client) in KEYS[1]:

- fixed windows: INCRBY, and PEXPIRE when the key has no expiry yet (it was just created);
  the answer is the count and the window's PTTL; a reservation adds only while the count is
  below its limit; a negative amount (a settled reservation) never creates a key nor goes
  below 0;
- sliding windows: one key per clock-aligned window, read with the previous one and
  incremented only when the request is accepted, on Redis's clock (``TIME``);
- leaky buckets: a hash {excess, last}, timed by Redis's own clock (``TIME``) so nodes whose
  clocks differ still agree;
- concurrent requests: per key, a hash {holder: slots held} and a sorted set {holder: lease
  end}; a holder is one process (node, pid and a random part) and renews the lease of every key
  it holds while it is alive (``Leases``), so the slots of a process that died (SIGKILL, a lost
  node) are no longer counted once its lease ends, at most ``lease`` seconds later.  Each
  acquire first drops the holders whose lease ended, on Redis's clock.
"""

INCR = """
local ttl = redis.call('pttl', KEYS[1])
if tonumber(ARGV[2]) < 0 then
  if ttl < 0 then return {0, tonumber(ARGV[1])} end
  local count = redis.call('incrby', KEYS[1], ARGV[2])
  if count < 0 then
    redis.call('set', KEYS[1], 0, 'PX', ttl)
    count = 0
  end
  return {count, ttl}
end
local count = redis.call('incrby', KEYS[1], ARGV[2])
if ttl < 0 then
  redis.call('pexpire', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
"""

# ARGV: window (ms), amount, limit.  Added only while the count is below the limit.
RESERVE = """
local ttl = redis.call('pttl', KEYS[1])
local count = 0
if ttl >= 0 then count = tonumber(redis.call('get', KEYS[1]) or '0') end
if count >= tonumber(ARGV[3]) then return {0, count, ttl} end
count = redis.call('incrby', KEYS[1], ARGV[2])
if ttl < 0 then
  redis.call('pexpire', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {1, count, ttl}
"""

PEEK = """
local ttl = redis.call('pttl', KEYS[1])
if ttl < 0 then return {0, -1} end
return {tonumber(redis.call('get', KEYS[1]) or '0'), ttl}
"""

# KEYS[1] is a hash-tagged prefix: both windows' keys land in its cluster slot.
SLIDING = """
local clock = redis.call('time')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local number = math.floor(now / window)
local current_key = KEYS[1] .. ':' .. number
local current = tonumber(redis.call('get', current_key) or '0')
local previous = math.min(tonumber(redis.call('get', KEYS[1] .. ':' .. (number - 1)) or '0'), limit)
local left = window - (now - number * window)
local rate = previous / window
local estimate = rate * left + current
if current >= limit or estimate >= limit then
  if current >= limit or rate == 0 then
    return {0, 0, string.format('%.6f', left)}
  end
  return {0, 0, string.format('%.6f', math.max(left - (limit - current) / rate, 0))}
end
redis.call('incr', current_key)
redis.call('pexpire', current_key, math.ceil((left + window) * 1000))
return {1, math.floor(limit - 1 - estimate), string.format('%.6f', left)}
"""

LEAKY = """
local clock = redis.call('time')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local state = redis.call('hmget', KEYS[1], 'excess', 'last')
local excess = 0
if state[1] then
  excess = math.max(tonumber(state[1]) - rate * math.abs(now - tonumber(state[2])) + 1, 0)
  if excess > burst then return false end
end
redis.call('hset', KEYS[1], 'excess', string.format('%.6f', excess),
           'last', string.format('%.6f', now))
redis.call('pexpire', KEYS[1], math.ceil((excess + 1) / rate * 1000) + 1000)
return string.format('%.6f', excess / rate)
"""

# KEYS[1]: a hash-tagged prefix (both keys in one cluster slot).  ARGV: limit, holder, lease
# (ms), how long the keys outlive their last update (ms).  Returns the count including this
# request; above the limit nothing was recorded.
ACQUIRE = """
local clock = redis.call('time')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local counts, leases = KEYS[1] .. ':n', KEYS[1] .. ':t'
for _, dead in ipairs(redis.call('zrangebyscore', leases, '-inf', now)) do
  redis.call('hdel', counts, dead)
end
redis.call('zremrangebyscore', leases, '-inf', now)
local total = 1
for _, held in ipairs(redis.call('hvals', counts)) do total = total + tonumber(held) end
if total > tonumber(ARGV[1]) then return total end
redis.call('hincrby', counts, ARGV[2], 1)
redis.call('zadd', leases, now + tonumber(ARGV[3]), ARGV[2])
redis.call('pexpire', counts, ARGV[4])
redis.call('pexpire', leases, ARGV[4])
return total
"""

# ARGV: holder.  Returns the slots the key's live holders still hold.
RELEASE = """
local counts, leases = KEYS[1] .. ':n', KEYS[1] .. ':t'
if redis.call('hincrby', counts, ARGV[1], -1) <= 0 then
  redis.call('hdel', counts, ARGV[1])
  redis.call('zrem', leases, ARGV[1])
end
local total = 0
for _, held in ipairs(redis.call('hvals', counts)) do total = total + tonumber(held) end
return total
"""

# ARGV: holder, lease (ms), keys' life (ms).  Returns 1 when the holder still holds the key.
RENEW = """
if redis.call('hexists', KEYS[1] .. ':n', ARGV[1]) == 0 then return 0 end
local clock = redis.call('time')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('zadd', KEYS[1] .. ':t', now + tonumber(ARGV[2]), ARGV[1])
redis.call('pexpire', KEYS[1] .. ':n', ARGV[3])
redis.call('pexpire', KEYS[1] .. ':t', ARGV[3])
return 1
"""
