//! Redis key and channel names of the cluster, and the Lua scripts that must run
//! atomically (claiming, reaping and buffering for a session whose node is gone).
//!
//! One Redis (a primary, optionally with replicas) serves the whole cluster; the
//! scripts touch keys they compute, so Redis Cluster (sharded) is not supported.
//! Several clusters can share one Redis through its database number
//! (`redis://host:6379/2`).

/// Liveness of a node: set with a TTL, refreshed every cluster heartbeat.
pub(crate) fn node_alive(node: &str) -> String {
    format!("sb:node:{node}")
}

/// Every node that registered and was not reaped yet.
pub(crate) const NODES: &str = "sb:nodes";

/// The sessions a node owns.
pub(crate) fn node_sessions(node: &str) -> String {
    format!("sb:ns:{node}")
}

/// A session's credentials and owner: hash `token`, `owner`, `user` (once joined),
/// `away_until` (ms).
pub(crate) fn session_meta(sid: &str) -> String {
    format!("sb:s:{sid}")
}

/// A session's replay buffer: a stream of entries with id `{seq}-0` and either
/// a field `f` (that seq's frame) or a field `g` (the mirror's group of frames,
/// the last of them the id; `mirror.rs`).
pub(crate) fn session_replay(sid: &str) -> String {
    format!("sb:r:{sid}")
}

/// Every room member of the cluster: field `room \n user \n session` → member JSON.
pub(crate) const MEMBERS: &str = "sb:members";

/// The field of one membership in [`MEMBERS`].
pub(crate) fn member_field(room: &str, user: &str, sid: &str) -> String {
    format!("{room}\n{user}\n{sid}")
}

/// Membership events, to every node.
pub(crate) const MEMBERSHIP: &str = "sb:m";

/// The inbox of one node: deliveries, answers, hand-over requests.
pub(crate) fn inbox(node: &str) -> String {
    format!("sb:n:{node}")
}

/// Held by the node that reaps a dead node, so only one does.
pub(crate) fn reap_lock(node: &str) -> String {
    format!("sb:reap:{node}")
}

/// Takes a session over for a resume on this node.
/// KEYS: meta. ARGV: token, this node, force ("1": even from a live owner), the
/// authenticated user asking ("" with auth off).
/// Returns `{"unknown"}`, `{"live", owner}` or `{"ok", previous owner}`.
pub(crate) const CLAIM: &str = r#"
local meta = redis.call('HMGET', KEYS[1], 'token', 'owner', 'user')
if not meta[1] or meta[1] ~= ARGV[1] then return {'unknown'} end
if ARGV[4] ~= '' and meta[3] and meta[3] ~= ARGV[4] then return {'unknown'} end
local owner = meta[2] or ''
if owner ~= ARGV[2] and ARGV[3] ~= '1' and owner ~= ''
   and redis.call('EXISTS', 'sb:node:' .. owner) == 1 then
  return {'live', owner}
end
local sid = string.sub(KEYS[1], 6)
redis.call('HSET', KEYS[1], 'owner', ARGV[2])
redis.call('HDEL', KEYS[1], 'away_until')
if owner ~= '' then redis.call('SREM', 'sb:ns:' .. owner, sid) end
redis.call('SADD', 'sb:ns:' .. ARGV[2], sid)
return {'ok', owner}
"#;

/// Reads a replay stream: its last generated seq and every entry.
/// KEYS: stream. Returns `{last_id, {{id, {'f', frame}}, …}}` (`'0-0'` when absent).
pub(crate) const READ_REPLAY: &str = r#"
if redis.call('TYPE', KEYS[1])['ok'] ~= 'stream' then return {'0-0', {}} end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local last = '0-0'
for i = 1, #info, 2 do
  if info[i] == 'last-generated-id' then last = info[i + 1] end
end
return {last, redis.call('XRANGE', KEYS[1], '-', '+')}
"#;

/// Buffers a message for a session whose node is gone (drained or dead), as the
/// owner would have: the next seq, stamped first, within the replay bound.
/// KEYS: meta, stream. ARGV: body (an object without `seq`), max entries.
/// Returns `{"gone"}`, `{"live", owner}` or `{"ok", seq}`.
pub(crate) const BUFFER_ORPHAN: &str = r#"
local owner = redis.call('HGET', KEYS[1], 'owner')
if not owner then return {'gone'} end
if redis.call('EXISTS', 'sb:node:' .. owner) == 1 then return {'live', owner} end
local seq = 0
if redis.call('TYPE', KEYS[2])['ok'] == 'stream' then
  local info = redis.call('XINFO', 'STREAM', KEYS[2])
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then
      seq = tonumber(string.match(info[i + 1], '^(%d+)'))
    end
  end
end
seq = seq + 1
local body = ARGV[1]
local frame
if body == '{}' then frame = '{"seq":' .. seq .. '}'
else frame = '{"seq":' .. seq .. ',' .. string.sub(body, 2) end
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], seq .. '-0', 'f', frame)
return {'ok', seq}
"#;

/// Removes a session of a dead node unless it moved or still waits for a resume.
/// KEYS: meta, stream. ARGV: dead node, now (ms).
/// Returns `"moved"`, `"wait"` or `"reaped"`.
pub(crate) const REAP_SESSION: &str = r#"
local meta = redis.call('HMGET', KEYS[1], 'owner', 'away_until')
if meta[1] and meta[1] ~= ARGV[1] then return 'moved' end
if meta[2] and tonumber(meta[2]) > tonumber(ARGV[2]) then return 'wait' end
redis.call('DEL', KEYS[1], KEYS[2])
return 'reaped'
"#;
