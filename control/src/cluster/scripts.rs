//! The Lua scripts that make each cluster step one atomic Redis operation, on Redis's clock
//! (`TIME`), never a node's. Keys (docs/cluster.md "Data model"):
//!
//! - `sl:nodes` ZSET: node id → lease expiry (ms, Redis clock)
//! - `sl:node:<id>` HASH: `boot`, `region`, `advertise`, `internal`, `capacity`, `load`, `state`,
//!   and the dataplane's `pressure`, `busy`, `pps`, `sessions`, `capacity_pps`
//! - `sl:node:<id>:rooms` SET: rooms homed on the node
//! - `sl:resv:<id>` ZSET: room → reservation expiry (placements not yet visible in `load`)
//! - `sl:room:<name>` HASH: `home`, `boot` (the home's boot id when claimed), `epoch`
//!
//! A home is alive while its lease is in the future **and** its current boot id is the one
//! the claim recorded: a node restarted with the same id does not resurrect old claims.

/// The Redis clock in milliseconds, as `now`.
const NOW: &str = "local t = redis.call('TIME')\n\
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n";

/// `alive(node, boot)`: the node's lease is running and it is still that boot.
const ALIVE: &str = "local function alive(n, b)\n\
  if not n or not b then return false end\n\
  local e = tonumber(redis.call('ZSCORE', 'sl:nodes', n) or '0')\n\
  return e > now and redis.call('HGET', 'sl:node:' .. n, 'boot') == b\n\
end\n";

/// Register or renew a lease. KEYS: `sl:nodes`, `sl:node:<id>`. ARGV: id, boot, lease_ms,
/// `register`|`renew`, region, advertise, internal, capacity, load, state, pressure, busy, pps,
/// sessions, capacity_pps.
/// → `{1, now}`; `{-1, now}`: renew refused, the lease was lost (expired or taken over);
/// `{-2, now}`: register refused, a live node of another boot holds the id.
pub(super) fn heartbeat() -> String {
    format!(
        "{NOW}\
local boot = redis.call('HGET', KEYS[2], 'boot')\n\
local exp = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]) or '0')\n\
if ARGV[4] == 'renew' then\n\
  if boot ~= ARGV[2] or exp <= now then return {{-1, now}} end\n\
else\n\
  if boot and boot ~= ARGV[2] and exp > now then return {{-2, now}} end\n\
  if boot ~= ARGV[2] then redis.call('DEL', KEYS[2] .. ':rooms', 'sl:resv:' .. ARGV[1]) end\n\
end\n\
redis.call('HSET', KEYS[2], 'boot', ARGV[2], 'region', ARGV[5], 'advertise', ARGV[6],\n\
  'internal', ARGV[7], 'capacity', ARGV[8], 'load', ARGV[9], 'state', ARGV[10],\n\
  'pressure', ARGV[11], 'busy', ARGV[12], 'pps', ARGV[13], 'sessions', ARGV[14],\n\
  'capacity_pps', ARGV[15])\n\
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])\n\
return {{1, now}}\n"
    )
}

/// Live nodes. KEYS: `sl:nodes`. ARGV: max nodes. → `{now, {id, lease_expiry, boot, region,
/// advertise, internal, capacity, load, state, reservations, rooms, pressure, busy, pps,
/// sessions, capacity_pps}...}` (strings).
pub(super) fn live_nodes() -> String {
    format!(
        "{NOW}\
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[1]))\n\
local out = {{tostring(now)}}\n\
for i = 1, #ids, 2 do\n\
  local n = ids[i]\n\
  local h = redis.call('HMGET', 'sl:node:' .. n, 'boot', 'region', 'advertise', 'internal', 'capacity', 'load', 'state',\n\
    'pressure', 'busy', 'pps', 'sessions', 'capacity_pps')\n\
  local resv = redis.call('ZCOUNT', 'sl:resv:' .. n, '(' .. now, '+inf')\n\
  local rooms = redis.call('SCARD', 'sl:node:' .. n .. ':rooms')\n\
  out[#out + 1] = {{n, ids[i + 1], h[1] or '', h[2] or '', h[3] or '', h[4] or '', h[5] or '0',\n\
    h[6] or '0', h[7] or '', tostring(resv), tostring(rooms), h[8] or '0', h[9] or '0', h[10] or '0',\n\
    h[11] or '0', h[12] or '0'}}\n\
end\n\
return out\n"
    )
}

/// The room's home if it is alive. KEYS: `sl:room:<name>`. → `{"existing", home, boot, epoch,
/// advertise, internal}` or `{"none"}`.
pub(super) fn lookup() -> String {
    format!(
        "{NOW}{ALIVE}\
local home = redis.call('HGET', KEYS[1], 'home')\n\
local hb = redis.call('HGET', KEYS[1], 'boot')\n\
if not alive(home, hb) then return {{'none'}} end\n\
local h = redis.call('HMGET', 'sl:node:' .. home, 'advertise', 'internal')\n\
return {{'existing', home, hb, redis.call('HGET', KEYS[1], 'epoch') or '0', h[1] or '', h[2] or ''}}\n"
    )
}

/// Claims the room for `candidate` unless a live home has it: one step, so two nodes can
/// never both become home. KEYS: `sl:room:<name>`. ARGV: room, candidate, reservation ms,
/// max rooms per node. → `{result, home, boot, epoch, advertise, internal}` with result
/// `existing` (a live home had it), `new` (claimed, no home before), `failover` (claimed from
/// a dead home), `none` (the candidate is not alive), `full` (the candidate's room cap).
pub(super) fn claim() -> String {
    format!(
        "{NOW}{ALIVE}\
local home = redis.call('HGET', KEYS[1], 'home')\n\
local hb = redis.call('HGET', KEYS[1], 'boot')\n\
local epoch = redis.call('HGET', KEYS[1], 'epoch') or '0'\n\
local result = 'existing'\n\
if not alive(home, hb) then\n\
  local c = ARGV[2]\n\
  local cb = redis.call('HGET', 'sl:node:' .. c, 'boot')\n\
  if not alive(c, cb) then return {{'none', c, '', '0', '', ''}} end\n\
  if redis.call('SCARD', 'sl:node:' .. c .. ':rooms') >= tonumber(ARGV[4]) then\n\
    return {{'full', c, '', '0', '', ''}}\n\
  end\n\
  if home then\n\
    redis.call('SREM', 'sl:node:' .. home .. ':rooms', ARGV[1])\n\
    result = 'failover'\n\
  else\n\
    result = 'new'\n\
  end\n\
  epoch = tostring(redis.call('HINCRBY', KEYS[1], 'epoch', 1))\n\
  redis.call('HSET', KEYS[1], 'home', c, 'boot', cb)\n\
  redis.call('PERSIST', KEYS[1])\n\
  redis.call('SADD', 'sl:node:' .. c .. ':rooms', ARGV[1])\n\
  redis.call('ZREMRANGEBYSCORE', 'sl:resv:' .. c, '-inf', now)\n\
  redis.call('ZADD', 'sl:resv:' .. c, now + tonumber(ARGV[3]), ARGV[1])\n\
  redis.call('PEXPIRE', 'sl:resv:' .. c, tonumber(ARGV[3]))\n\
  home = c\n\
  hb = cb\n\
end\n\
local h = redis.call('HMGET', 'sl:node:' .. home, 'advertise', 'internal')\n\
return {{result, home, hb, epoch, h[1] or '', h[2] or ''}}\n"
    )
}

/// Gives a room up (its actor retired) if this node is still its home at `epoch`.
/// KEYS: `sl:room:<name>`. ARGV: room, node, boot, epoch, ttl s. → 1 released, 0 not ours.
pub(super) fn release() -> String {
    "if redis.call('HGET', KEYS[1], 'home') == ARGV[2]\n\
  and redis.call('HGET', KEYS[1], 'boot') == ARGV[3]\n\
  and redis.call('HGET', KEYS[1], 'epoch') == ARGV[4] then\n\
  redis.call('HDEL', KEYS[1], 'home', 'boot')\n\
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[5]))\n\
  redis.call('SREM', 'sl:node:' .. ARGV[2] .. ':rooms', ARGV[1])\n\
  return 1\n\
end\n\
return 0\n"
        .to_owned()
}

/// Removes expired nodes and un-homes their rooms (they are placed again at their next
/// join). KEYS: `sl:nodes`. ARGV: max nodes, max rooms per node per sweep, room key ttl s.
/// → `{now, {dead node...}, {un-homed room...}}`; a node with rooms left stays for the next
/// sweep.
pub(super) fn sweep() -> String {
    format!(
        "{NOW}\
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))\n\
local out = {{}}\n\
for _, n in ipairs(dead) do\n\
  local nk = 'sl:node:' .. n\n\
  local boot = redis.call('HGET', nk, 'boot')\n\
  local rooms = redis.call('SPOP', nk .. ':rooms', tonumber(ARGV[2]))\n\
  for _, r in ipairs(rooms) do\n\
    local rk = 'sl:room:' .. r\n\
    if redis.call('HGET', rk, 'home') == n and redis.call('HGET', rk, 'boot') == boot then\n\
      redis.call('HDEL', rk, 'home', 'boot')\n\
      redis.call('EXPIRE', rk, tonumber(ARGV[3]))\n\
      out[#out + 1] = r\n\
    end\n\
  end\n\
  if redis.call('SCARD', nk .. ':rooms') == 0 then\n\
    redis.call('ZREM', KEYS[1], n)\n\
    redis.call('DEL', nk, 'sl:resv:' .. n)\n\
  end\n\
end\n\
return {{now, dead, out}}\n"
    )
}

/// Re-claims rooms this node still hosts after it lost its lease and registered again (a Redis
/// outage or restart, a freeze): one atomic step per batch. A room is taken back unless another
/// live home holds it (then it is this node's to give up); its epoch becomes one more than both
/// the stored and the node's own (a Redis restarted empty forgot it), so fencing by epoch stays
/// meaningful. KEYS: none (computed). ARGV: node, boot, then room, known epoch pairs.
/// → `{'ok', epoch or '' (lost) per room}`; `{'none'}` when the node is not alive at `boot`.
pub(super) fn reassert() -> String {
    format!(
        "{NOW}{ALIVE}\
local me, b = ARGV[1], ARGV[2]\n\
if not alive(me, b) then return {{'none'}} end\n\
local out = {{'ok'}}\n\
for i = 3, #ARGV - 1, 2 do\n\
  local r = ARGV[i]\n\
  local rk = 'sl:room:' .. r\n\
  local home = redis.call('HGET', rk, 'home')\n\
  local hb = redis.call('HGET', rk, 'boot')\n\
  local stored = tonumber(redis.call('HGET', rk, 'epoch') or '0') or 0\n\
  if home == me and hb == b then\n\
    out[#out + 1] = tostring(stored)\n\
  elseif alive(home, hb) then\n\
    out[#out + 1] = ''\n\
  else\n\
    if home then redis.call('SREM', 'sl:node:' .. home .. ':rooms', r) end\n\
    local e = math.max(stored, tonumber(ARGV[i + 1]) or 0) + 1\n\
    redis.call('HSET', rk, 'home', me, 'boot', b, 'epoch', string.format('%d', e))\n\
    redis.call('PERSIST', rk)\n\
    redis.call('SADD', 'sl:node:' .. me .. ':rooms', r)\n\
    out[#out + 1] = string.format('%d', e)\n\
  end\n\
end\n\
return out\n"
    )
}
