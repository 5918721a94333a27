//! The Lua scripts: every change to the live state is one of these, run atomically by Redis.
//!
//! Each script is `LIB` (shared helpers) followed by its body, and names every key it touches
//! in KEYS (see [`super::keys`] for the one hash tag that makes them one Cluster slot). The
//! scripts never read the clock: `now` (Unix ms) comes from the caller, so tests control time.
//!
//! Shapes (JSON values in the `tickets`, `agents` and `offers` hashes; see [`super::model`]):
//! versions and rank scores travel as strings, because Redis's cjson prints numbers with 14
//! significant digits, too few for a 2^53 score; times are Unix ms (13 digits, exact).
//!
//! Costs: every script is O(log n) in queue and agent counts, plus O(departments of the agent)
//! for the readiness index and O(tickets of the agent) to count capacity in use (both bounded
//! by the agent record's limits: 20 departments, 50 tickets per channel).

use std::sync::LazyLock;

use redis::Script;

/// Helpers shared by every script. KEYS positions are fixed per script, so helpers take keys
/// as arguments.
const LIB: &str = r#"
local function jget(hash, field)
  local s = redis.call('HGET', hash, field)
  if s then return cjson.decode(s) end
  return nil
end
local function jset(hash, field, value)
  redis.call('HSET', hash, field, cjson.encode(value))
end
local function lexm(dept, id) return dept .. '\0' .. id end
-- Active (not parked) tickets per channel, and whether one is a voice call.
local function load_of(a)
  local act, voice, total = {}, false, 0
  for _, e in pairs(a.tk or {}) do
    if not e.p then
      act[e.c] = (act[e.c] or 0) + 1
      total = total + 1
      if e.c == 'voice' then voice = true end
    end
  end
  return act, voice, total
end
-- A session lives while its lease runs: renewed by the stream's holder while connected, set
-- to the resume grace when the stream breaks.
local function has_session(a, now)
  return a.sess ~= nil and (a.lease or 0) > now
end
local function connected(a, now) return a.conn and has_session(a, now) end
local function free_for(a, chan)
  local act, voice, total = load_of(a)
  if voice then return false end
  local cap = (a.rec and a.rec.cap and a.rec.cap[chan]) or 0
  if chan == 'voice' then return cap > 0 and total == 0 end
  return (act[chan] or 0) < cap
end
local function ready(a, now)
  if not a.rec or a.rec.dis or a.pres ~= 'available' or a.offer ~= nil then return false end
  if not connected(a, now) then return false end
  for chan, _ in pairs(a.rec.cap or {}) do
    if free_for(a, chan) then return true end
  end
  return false
end
-- The index names an agent is listed under: its departments, and its team as "\1<team>"
-- (control characters cannot occur in department names), so team routing steps find members
-- of other departments.
local function depts_of(a)
  local names = {}
  if a and a.rec then
    for d, _ in pairs(a.rec.depts or {}) do names[d] = true end
    if a.rec.team then names['\1' .. a.rec.team] = true end
  end
  return names
end
-- Writes the agent and keeps the staff and ready indexes (one lex entry per department) true.
local function save_agent(agents, staff, readyz, id, a, before_depts, now)
  jset(agents, id, a)
  local depts = depts_of(a)
  for d, _ in pairs(before_depts or {}) do
    if not depts[d] then
      redis.call('ZREM', staff, lexm(d, id))
      redis.call('ZREM', readyz, lexm(d, id))
    end
  end
  local r = ready(a, now)
  for d, _ in pairs(depts) do
    redis.call('ZADD', staff, 0, lexm(d, id))
    if r then redis.call('ZADD', readyz, 0, lexm(d, id)) else redis.call('ZREM', readyz, lexm(d, id)) end
  end
end
local function new_agent() return {tk = {}, pres = 'offline', cnt = 0, missed = 0} end
-- Rolling per-minute counters of offer outcomes (o offered, a accepted, d declined,
-- e expired, c cancelled), pruned to the counter window on every write.
local function bump(buckets, now, kind)
  local m = math.floor(now / 60000)
  local key = string.format('%d', m)
  buckets[key] = buckets[key] or {}
  buckets[key][kind] = (buckets[key][kind] or 0) + 1
  for k, _ in pairs(buckets) do
    if tonumber(k) < m - WINDOW_MINUTES then buckets[k] = nil end
  end
end
-- A department's statistics: counters (see bump) and offers pending per tier.
local function dstat(dstats, dept, now, kind, tier, offered_delta)
  local s = jget(dstats, dept) or {}
  s.b = s.b or {}
  s.off = s.off or {}
  if kind then bump(s.b, now, kind) end
  if offered_delta ~= 0 then s.off[tier] = math.max(0, (s.off[tier] or 0) + offered_delta) end
  jset(dstats, dept, s)
end
local function astat(a, now, kind)
  a.oc = a.oc or {}
  bump(a.oc, now, kind)
end
local function idle_check(a, now)
  local _, _, total = load_of(a)
  if total == 0 then
    if a.idle == nil then a.idle = now end
  else
    a.idle = nil
  end
end
"#;

/// The counter window in minutes (`QueueStatsSnapshot.counter_window`).
pub const WINDOW_MINUTES: i64 = 15;

fn script(body: &str) -> Script {
    Script::new(&format!(
        "local WINDOW_MINUTES = {WINDOW_MINUTES}\n{LIB}\n{body}"
    ))
}

/// Script status: changed the state.
pub const APPLIED: i64 = 1;
/// Script status: nothing to do (older version, already in that state).
pub const IGNORED: i64 = 0;
/// Script status: the ticket is in another department than the caller named; retry with it.
pub const MOVED: i64 = -1;
/// Script status: no such entry.
pub const MISSING: i64 = -2;
/// Script status: the entry belongs to another agent.
pub const NOT_YOURS: i64 = -3;
/// Script status: the entry is not in a state that allows the call.
pub const NOT_PENDING: i64 = -4;

/// SyncTicket: the ticket's routing state as of a version (see the proto's rules).
///
/// KEYS: 1 tickets, 2 agents, 3 offers, 4 offer_exp, 5 offer_end, 6 ready, 7 staff, 8 gone,
/// 9 depts, 10 new queue, 11 current queue, 12 new waiting set, 13 new due set, 14 current
/// waiting set, 15 current due set, 16 dstats.
/// ARGV: 1 now, 2 ticket id, 3 version, 4 state (waiting|active|parked|done), 5 dept, 6 tier,
/// 7 channel, 8 score, 9 member, 10 data, 11 enqueue ms, 12 agent, 13 reservation,
/// 14 department of the current keys named, 15 events channel, 16 tier of the current keys
/// named, 17 pickup due ms, 18 '1' to leave out the department notice of a waiting ticket
/// (a batch publishes one per department after its scripts).
/// Returns {status, version (or department if moved), 0-based rank or false, withdrawn offer
/// or false, tier if moved}.
pub static SYNC: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local now = tonumber(ARGV[1])
local id, v, st = ARGV[2], ARGV[3], ARGV[4]
local t = jget(KEYS[1], id)
local waiting_before = t and (t.st == 'queued' or t.st == 'offered')
if waiting_before and (t.dept ~= ARGV[14] or t.tier ~= ARGV[16]) then
  return {-1, t.dept, false, false, t.tier}
end
if t and tonumber(t.v) >= tonumber(v) then
  local rank = false
  if t.st == 'queued' then rank = redis.call('ZRANK', KEYS[11], t.member) end
  return {0, t.v, rank, false, false}
end
local old = t or {}
local notify = {}
local cancelled = false
-- A pending offer survives a re-rank within its department; an offer to the agent the ticket
-- is now assigned to counts as accepted; any other is withdrawn.
local keep_offer = false
if old.st == 'offered' then
  local o = jget(KEYS[3], old.offer)
  -- A channel change changes the capacity the ticket needs, so the offer is withdrawn too.
  keep_offer = o ~= nil and st == 'waiting' and ARGV[5] == old.dept and ARGV[7] == o.chan
  if keep_offer and (o.step == 'team' or o.step == 'department') then
    -- Those steps need the skills: an agent lacking one the ticket now requires is no longer
    -- eligible, so the offer is withdrawn (ticket_changed).
    local b = jget(KEYS[2], o.agent)
    local held = (b and b.rec and b.rec.skills) or {}
    for _, skill in ipairs(cjson.decode(ARGV[10]).required_skills or {}) do
      if not held[skill] then keep_offer = false end
    end
  end
  if o and keep_offer then
    if o.tier ~= ARGV[6] then
      dstat(KEYS[16], o.dept, now, nil, o.tier, -1)
      dstat(KEYS[16], o.dept, now, nil, ARGV[6], 1)
    end
    o.tier, o.d = ARGV[6], ARGV[10]
    jset(KEYS[3], old.offer, o)
  elseif o then
    local a = jget(KEYS[2], o.agent)
    if (st == 'active' or st == 'parked') and o.agent == ARGV[12] then
      o.st = 'accepted'
      dstat(KEYS[16], o.dept, now, 'a', o.tier, -1)
      -- An accept is an answer: the missed count starts again (as CONFIRM does).
      if a then astat(a, now, 'a') a.missed = 0 end
    else
      o.st = 'cancelled'
      if st == 'waiting' then o.why = 'ticket_changed' else o.why = 'ticket_gone' end
      cancelled = old.offer
      dstat(KEYS[16], o.dept, now, 'c', o.tier, -1)
      if a then astat(a, now, 'c') end
    end
    o['end'] = now
    jset(KEYS[3], old.offer, o)
    redis.call('ZREM', KEYS[4], old.offer)
    redis.call('ZADD', KEYS[5], now, old.offer)
    if a then
      if a.offer == old.offer then a.offer = nil end
      save_agent(KEYS[2], KEYS[7], KEYS[6], o.agent, a, depts_of(a), now)
    end
    notify[o.agent] = true
  end
end
if old.st == 'queued' then redis.call('ZREM', KEYS[11], old.member) end
if waiting_before then
  redis.call('ZREM', KEYS[14], id)
  redis.call('ZREM', KEYS[15], id)
end
-- The previous assignment ends unless the same agent keeps the ticket.
if old.agent and not ((st == 'active' or st == 'parked') and old.agent == ARGV[12]) then
  local a = jget(KEYS[2], old.agent)
  if a then
    a.tk[id] = nil
    idle_check(a, now)
    save_agent(KEYS[2], KEYS[7], KEYS[6], old.agent, a, depts_of(a), now)
  end
  notify[old.agent] = true
end
local rank = false
local n = {v = v, dept = ARGV[5], tier = ARGV[6], chan = ARGV[7], d = ARGV[10]}
if st == 'waiting' then
  n.score, n.member, n.enq, n.due = ARGV[8], ARGV[9], tonumber(ARGV[11]), tonumber(ARGV[17])
  if keep_offer then n.st, n.offer, n.dec = 'offered', old.offer, old.dec
  else
    n.st = 'queued'
    if waiting_before and old.dept == ARGV[5] then n.dec = old.dec end
    redis.call('ZADD', KEYS[10], ARGV[8], ARGV[9])
    rank = redis.call('ZRANK', KEYS[10], ARGV[9])
  end
  n.dec = n.dec or {}
  redis.call('ZADD', KEYS[12], ARGV[11], id)
  redis.call('ZADD', KEYS[13], ARGV[17], id)
  redis.call('SADD', KEYS[9], ARGV[5])
  if ARGV[18] ~= '1' then redis.call('PUBLISH', ARGV[15], 'd:' .. ARGV[5]) end
elseif st == 'active' or st == 'parked' then
  n.st, n.agent, n.rid = st, ARGV[12], ARGV[13]
  local a = jget(KEYS[2], ARGV[12]) or new_agent()
  local before = depts_of(a)
  local prior = a.tk[id]
  if not prior then
    a.la = now
    a.cnt = (a.cnt or 0) + 1
  end
  n.at = (prior and prior.at) or now
  a.tk[id] = {c = ARGV[7], p = (st == 'parked'), rid = ARGV[13], at = n.at, v = v}
  if old.st == 'offered' and a.offer == old.offer then a.offer = nil end
  idle_check(a, now)
  save_agent(KEYS[2], KEYS[7], KEYS[6], ARGV[12], a, before, now)
  notify[ARGV[12]] = true
else
  n = {v = v, st = 'removed'}
  redis.call('ZADD', KEYS[8], now, id)
end
if st ~= 'done' then redis.call('ZREM', KEYS[8], id) end
jset(KEYS[1], id, n)
for agent, _ in pairs(notify) do redis.call('PUBLISH', ARGV[15], 'a:' .. agent) end
if cancelled and old.dept then redis.call('PUBLISH', ARGV[15], 'd:' .. old.dept) end
return {1, v, rank, cancelled, false}
"#,
    )
});

/// Reads what one department's dispatch round needs: the best waiting tickets without an offer,
/// the ready agents serving the department or one of the named teams, and the agents the
/// tickets name (account managers, preferred agents: their steps depend on their presence
/// even when they are busy).
///
/// Nothing at all while no agent is ready anywhere: offers go only to ready agents (RESERVE
/// checks it again; the ready index lists every agent that could be ready, see `ready`), so no
/// offer could come of reading the queue. This keeps a deep queue with every agent busy, or an
/// intake burst with nobody signed in, from costing a read of the queue's head per change.
///
/// How many ready agents are read per index (the department, each team): all of them up to
/// the cap (ARGV 3) when ARGV 4 is 0; else `ARGV 4 × tickets found`, at least ARGV 5, at most
/// the cap. A window of the index starting at `ARGV 6 mod count` and wrapping round, so that
/// with more ready agents than are read each is as likely to be seen (the index is in id order:
/// reading from its start would give the lowest ids all the work). The reply says whether an
/// index had more ready agents than were read.
///
/// KEYS: 1 queue, 2 tickets, 3 ready, 4 agents. ARGV: 1 dept, 2 tickets wanted, 3 agents at
/// most per index, 4 agents per ticket found (0: the cap), 5 agents at least, 6 rotation,
/// then team ids. Returns {{ticket id, ticket json, ...}, {agent id, agent json, ...},
/// 1 if an index had more than were read else 0}.
pub static PEEK: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
if redis.call('ZCARD', KEYS[3]) == 0 then return {{}, {}, 0} end
local members = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)
local tickets, seen, agents = {}, {}, {}
local function add_agent(id)
  if seen[id] then return end
  seen[id] = true
  local a = redis.call('HGET', KEYS[4], id)
  if a then table.insert(agents, id) table.insert(agents, a) end
end
local named = {}
for _, m in ipairs(members) do
  local id = string.sub(m, 15)
  local t = redis.call('HGET', KEYS[2], id)
  -- Decoding is most of this script's cost, and only a ticket naming an agent needs it. In
  -- the stored text a named agent shows as account_manager_id\":\" (d is JSON escaped
  -- inside the entry); null, or the same words inside a field's value (escaped twice), never
  -- match, so the plain search only skips tickets that name nobody.
  local names = t and (string.find(t, 'account_manager_id\\":\\"', 1, true)
    or string.find(t, 'preferred_agent_id\\":\\"', 1, true))
  if t then
    table.insert(tickets, id) table.insert(tickets, t)
  end
  if names then
    local ok, d = pcall(cjson.decode, cjson.decode(t).d or 'null')
    if ok and type(d) == 'table' then
      if type(d.account_manager_id) == 'string' then named[d.account_manager_id] = true end
      if type(d.preferred_agent_id) == 'string' then named[d.preferred_agent_id] = true end
    end
  end
end
local want = tonumber(ARGV[3])
if tonumber(ARGV[4]) > 0 then
  want = math.min(want, math.max(tonumber(ARGV[5]), tonumber(ARGV[4]) * (#tickets / 2)))
end
local rotation, partial = tonumber(ARGV[6]), 0
local function add_index(name)
  local prefix = name .. '\0'
  local lo, hi = '[' .. prefix, '(' .. name .. '\1'
  local count = redis.call('ZLEXCOUNT', KEYS[3], lo, hi)
  local from = 0
  if count > want then
    partial = 1
    from = rotation % count
  end
  local entries = redis.call('ZRANGEBYLEX', KEYS[3], lo, hi, 'LIMIT', from, want)
  for _, m in ipairs(entries) do add_agent(string.sub(m, #prefix + 1)) end
  if #entries < want and from > 0 then
    entries = redis.call('ZRANGEBYLEX', KEYS[3], lo, hi, 'LIMIT', 0, math.min(want - #entries, from))
    for _, m in ipairs(entries) do add_agent(string.sub(m, #prefix + 1)) end
  end
end
if #tickets > 0 then
  add_index(ARGV[1])
  for i = 7, #ARGV do add_index('\1' .. ARGV[i]) end
  for id, _ in pairs(named) do add_agent(id) end
end
return {tickets, agents, partial}
"#,
    )
});

/// Makes offers decided by a dispatch round in one department. Each is checked again here
/// (the round read a snapshot; another router may have acted since): the ticket still queued
/// at the version seen and not declined by the agent; the agent ready, serving the department,
/// with capacity for the channel. Offers that fail the check are skipped.
///
/// KEYS: 1 tickets, 2 agents, 3 offers, 4 offer_exp, 5 ready, 6 staff, 7 queue, 8 dstats.
/// ARGV: 1 now, 2 expire ms, 3 dept, 4 events channel, then per offer: ticket id, version seen,
/// agent id, reservation id, step kind. Returns the reservation ids made.
pub static RESERVE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local now, exp, dept = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local made = {}
for i = 5, #ARGV, 5 do
  local tid, tv, aid, rid, step = ARGV[i], ARGV[i+1], ARGV[i+2], ARGV[i+3], ARGV[i+4]
  local t = jget(KEYS[1], tid)
  local a = jget(KEYS[2], aid)
  if t and a and t.st == 'queued' and t.v == tv and t.dept == dept and not (t.dec or {})[aid]
     and ready(a, now) and free_for(a, t.chan) then
    local o = {agent = aid, ticket = tid, st = 'pending', made = now, exp = exp, step = step,
               dept = dept, chan = t.chan, tier = t.tier, tv = t.v, d = t.d}
    jset(KEYS[3], rid, o)
    redis.call('ZADD', KEYS[4], exp, rid)
    redis.call('ZREM', KEYS[7], t.member)
    t.st, t.offer = 'offered', rid
    jset(KEYS[1], tid, t)
    a.offer = rid
    astat(a, now, 'o')
    dstat(KEYS[8], dept, now, 'o', t.tier, 1)
    save_agent(KEYS[2], KEYS[6], KEYS[5], aid, a, depts_of(a), now)
    redis.call('PUBLISH', ARGV[4], 'a:' .. aid)
    table.insert(made, rid)
  end
end
return made
"#,
    )
});

/// First step of AcceptOffer: holds a pending offer while the ticket service records the
/// assignment, so it cannot expire meanwhile (the hold itself expires, for a router that dies
/// mid-accept).
///
/// KEYS: 1 offers, 2 offer_exp. ARGV: 1 reservation, 2 agent, 3 now, 4 hold until.
/// Returns {status, offer json or state}.
pub static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local o = jget(KEYS[1], ARGV[1])
if not o then return {-2, false} end
if o.agent ~= ARGV[2] then return {-3, o.st} end
if o.st == 'accepted' then return {0, cjson.encode(o)} end
-- A repeated accept re-takes its own hold while it runs; once the hold ran out the offer is
-- as good as expired (the sweep ends it), like a pending one past its expiry.
if (o.st == 'accepting' and (o.hold or 0) > tonumber(ARGV[3]))
   or (o.st == 'pending' and o.exp > tonumber(ARGV[3])) then
  o.st = 'accepting'
  o.hold = tonumber(ARGV[4])
  jset(KEYS[1], ARGV[1], o)
  redis.call('ZADD', KEYS[2], o.hold, ARGV[1])
  return {1, cjson.encode(o)}
end
if o.st == 'pending' or o.st == 'accepting' then return {-4, 'expired'} end
return {-4, o.st}
"#,
    )
});

/// Gives back a held offer after the ticket service could not be reached: pending again until
/// its own expiry.
///
/// KEYS: 1 offers, 2 offer_exp. ARGV: 1 reservation.
pub static UNCLAIM: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local o = jget(KEYS[1], ARGV[1])
if not o or o.st ~= 'accepting' then return 0 end
o.st, o.hold = 'pending', nil
jset(KEYS[1], ARGV[1], o)
redis.call('ZADD', KEYS[2], o.exp, ARGV[1])
return 1
"#,
    )
});

/// Completes AcceptOffer once the ticket service recorded the assignment: the offer is
/// accepted and the ticket occupies the agent's capacity. The ticket service is the authority,
/// so this holds whatever the live state did meanwhile (an offer to someone else is withdrawn).
///
/// Only a ticket the live state still holds at or below the assigned version becomes active
/// (a ticket already closed at a later version must not take the agent's capacity), and it
/// leaves the queue and statistics of the department and tier it is in now (it may have moved
/// since the offer): the caller names them, and is told to retry if they changed.
///
/// KEYS: 1 tickets, 2 agents, 3 offers, 4 offer_exp, 5 offer_end, 6 ready, 7 staff, 8 queue of
/// the ticket's department, 9 its waiting set and 10 due set for the ticket's tier, 11 dstats.
/// ARGV: 1 reservation, 2 now, 3 ticket version after the assignment, 4 events channel,
/// 5 the ticket's department and 6 tier as the caller read them.
/// Returns {status, assign ms, false} or {MOVED, department, tier}.
pub static CONFIRM: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local rid, now, av = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local o = jget(KEYS[3], rid)
if not o then return {-2, false, false} end
if o.st == 'accepted' then return {0, o['end'] or now, false} end
local t = jget(KEYS[1], o.ticket)
local waiting = t and (t.st == 'queued' or t.st == 'offered')
if waiting and (t.dept ~= ARGV[5] or t.tier ~= ARGV[6]) then return {-1, t.dept, t.tier} end
local was_pending = o.st == 'pending' or o.st == 'accepting'
o.st = 'accepted'
o['end'] = now
o.hold = nil
jset(KEYS[3], rid, o)
redis.call('ZREM', KEYS[4], rid)
redis.call('ZADD', KEYS[5], now, rid)
if was_pending then dstat(KEYS[11], o.dept, now, 'a', o.tier, -1)
else dstat(KEYS[11], o.dept, now, 'a', o.tier, 0) end
local assign = t ~= nil and t.st ~= 'removed' and tonumber(t.v) <= tonumber(av)
if assign then
  if t.st == 'offered' and t.offer ~= rid then
    local other = jget(KEYS[3], t.offer)
    if other then
      other.st, other.why, other['end'] = 'cancelled', 'ticket_gone', now
      jset(KEYS[3], t.offer, other)
      dstat(KEYS[11], other.dept, now, 'c', other.tier, -1)
      redis.call('ZREM', KEYS[4], t.offer)
      redis.call('ZADD', KEYS[5], now, t.offer)
      local b = jget(KEYS[2], other.agent)
      if b and b.offer == t.offer then
        b.offer = nil
        save_agent(KEYS[2], KEYS[7], KEYS[6], other.agent, b, depts_of(b), now)
      end
      redis.call('PUBLISH', ARGV[4], 'a:' .. other.agent)
    end
  end
  if t.st == 'queued' then redis.call('ZREM', KEYS[8], t.member) end
  if waiting then
    redis.call('ZREM', KEYS[9], o.ticket)
    redis.call('ZREM', KEYS[10], o.ticket)
  end
  if t.agent and t.agent ~= o.agent then
    local b = jget(KEYS[2], t.agent)
    if b then
      b.tk[o.ticket] = nil
      idle_check(b, now)
      save_agent(KEYS[2], KEYS[7], KEYS[6], t.agent, b, depts_of(b), now)
      redis.call('PUBLISH', ARGV[4], 'a:' .. t.agent)
    end
  end
  local n = {v = av, st = 'active', dept = t.dept or o.dept, tier = t.tier or o.tier,
             chan = o.chan, d = t.d or o.d, agent = o.agent, rid = rid, at = now}
  jset(KEYS[1], o.ticket, n)
end
local a = jget(KEYS[2], o.agent) or new_agent()
local before = depts_of(a)
if a.offer == rid then a.offer = nil end
a.missed = 0
astat(a, now, 'a')
if assign and not a.tk[o.ticket] then
  a.tk[o.ticket] = {c = o.chan, p = false, rid = rid, at = now, v = av}
  a.la = now
  a.cnt = (a.cnt or 0) + 1
end
idle_check(a, now)
save_agent(KEYS[2], KEYS[7], KEYS[6], o.agent, a, before, now)
redis.call('PUBLISH', ARGV[4], 'a:' .. o.agent)
return {1, now, false}
"#,
    )
});

/// Ends an offer without acceptance: declined by its agent, expired, or withdrawn. The ticket
/// returns to its queue at its original rank (its member and score are unchanged) and, if
/// declined or expired, is not offered to that agent again while it waits. An expiry counts
/// towards NOT_RESPONDING; a decline resets the count.
///
/// KEYS: 1 tickets, 2 agents, 3 offers, 4 offer_exp, 5 offer_end, 6 ready, 7 staff, 8 queue of
/// the offer's department, 9 dstats.
/// ARGV: 1 reservation, 2 now, 3 outcome (declined|expired|cancelled), 4 cancel reason,
/// 5 agent who declines ('' if not a decline), 6 NOT_RESPONDING after this many missed (0
/// never), 7 events channel, 8 states it may end from (comma-separated), 9 the offer's
/// department as the caller read it.
/// Returns {status, offer json or state}.
pub static END_OFFER: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local rid, now, outcome = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local o = jget(KEYS[3], rid)
if not o then return {-2, false} end
if o.dept ~= ARGV[9] then return {-1, o.dept} end
if ARGV[5] ~= '' and o.agent ~= ARGV[5] then return {-3, o.st} end
if o.st == outcome and outcome == 'declined' then return {0, cjson.encode(o)} end
if not string.find(',' .. ARGV[8] .. ',', ',' .. o.st .. ',', 1, true) then return {-4, o.st} end
if outcome == 'expired' and o.st == 'pending' and o.exp > now then return {-4, 'pending'} end
if outcome == 'expired' and o.st == 'accepting' and (o.hold or 0) > now then return {-4, 'accepting'} end
local kind = string.sub(outcome, 1, 1)
o.st, o['end'], o.hold = outcome, now, nil
if outcome == 'cancelled' then o.why = ARGV[4] end
jset(KEYS[3], rid, o)
redis.call('ZREM', KEYS[4], rid)
redis.call('ZADD', KEYS[5], now, rid)
dstat(KEYS[9], o.dept, now, kind, o.tier, -1)
local t = jget(KEYS[1], o.ticket)
if t and t.st == 'offered' and t.offer == rid then
  t.st, t.offer = 'queued', nil
  t.dec = t.dec or {}
  if outcome ~= 'cancelled' then t.dec[o.agent] = true end
  jset(KEYS[1], o.ticket, t)
  redis.call('ZADD', KEYS[8], t.score, t.member)
  redis.call('PUBLISH', ARGV[7], 'd:' .. o.dept)
end
local a = jget(KEYS[2], o.agent)
if a then
  if a.offer == rid then a.offer = nil end
  astat(a, now, kind)
  if outcome == 'declined' then a.missed = 0 end
  if outcome == 'expired' then
    a.missed = (a.missed or 0) + 1
    local limit = tonumber(ARGV[6])
    if limit > 0 and a.missed >= limit and a.pres == 'available' then
      a.pres, a.why, a.note, a.ps = 'away', 'not_responding', '', now
      a.missed = 0
    end
  end
  save_agent(KEYS[2], KEYS[7], KEYS[6], o.agent, a, depts_of(a), now)
  redis.call('PUBLISH', ARGV[7], 'a:' .. o.agent)
end
return {1, cjson.encode(o)}
"#,
    )
});

/// Writes an agent's record (from AgentService.UpsertAgent or a desktop connecting) into the
/// live state, creating an OFFLINE entry if there is none.
///
/// KEYS: 1 agents, 2 ready, 3 staff, 4 depts. ARGV: 1 agent, 2 record json, 3 now, 4 events
/// channel. Returns the pending offer's reservation if the record now forbids it (disabled),
/// else false.
pub static PUT_RECORD: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local now = tonumber(ARGV[3])
local a = jget(KEYS[1], ARGV[1]) or new_agent()
local before = depts_of(a)
a.rec = cjson.decode(ARGV[2])
local withdraw = false
if a.rec.dis and a.offer then withdraw = a.offer end
if a.idle == nil then idle_check(a, now) end
save_agent(KEYS[1], KEYS[3], KEYS[2], ARGV[1], a, before, now)
redis.call('PUBLISH', ARGV[4], 'a:' .. ARGV[1])
-- A department with agents is a department (statistics list it before its first ticket).
for d, _ in pairs(a.rec.depts or {}) do
  redis.call('SADD', KEYS[4], d)
  redis.call('PUBLISH', ARGV[4], 'd:' .. d)
end
return withdraw
"#,
    )
});

/// Opens or resumes a desktop session. A session resumes if `session` is the agent's current
/// one and has not lapsed; otherwise a new session starts (replacing any other) with the
/// initial presence.
///
/// KEYS: 1 agents, 2 ready, 3 staff, 4 leases, 5 depts. ARGV: 1 agent, 2 record json, 3 session
/// asked
/// ('' for none), 4 new session id, 5 now, 6 lease until, 7 initial presence
/// (available|away|keep), 8 events channel.
/// Returns {resumed 0/1, session id, pending offer to withdraw or false}.
pub static OPEN_SESSION: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local now = tonumber(ARGV[5])
local a = jget(KEYS[1], ARGV[1]) or new_agent()
local before = depts_of(a)
a.rec = cjson.decode(ARGV[2])
local resumed = ARGV[3] ~= '' and a.sess == ARGV[3] and has_session(a, now)
local withdraw = false
if not resumed then
  if a.offer then withdraw = a.offer end
  a.sess = ARGV[4]
  -- 'keep' (UNSPECIFIED) keeps only a resumed session's presence.
  if ARGV[7] == 'available' then a.pres, a.why = 'available', nil
  else a.pres, a.why = 'away', 'not_ready' end
  a.note, a.ps = '', now
  a.missed = 0
elseif ARGV[7] == 'available' and a.pres ~= 'available' then
  a.pres, a.why, a.note, a.ps = 'available', nil, '', now
elseif ARGV[7] == 'away' and a.pres ~= 'away' then
  -- Resuming as AWAY (NOT_READY) is going away: the pending offer goes to someone else.
  a.pres, a.why, a.note, a.ps = 'away', 'not_ready', '', now
  if a.offer then withdraw = a.offer end
end
a.conn = true
a.lease = tonumber(ARGV[6])
if a.idle == nil then idle_check(a, now) end
save_agent(KEYS[1], KEYS[3], KEYS[2], ARGV[1], a, before, now)
redis.call('ZADD', KEYS[4], a.lease, ARGV[1])
redis.call('PUBLISH', ARGV[8], 'a:' .. ARGV[1])
for d, _ in pairs(a.rec.depts or {}) do
  redis.call('SADD', KEYS[5], d)
  redis.call('PUBLISH', ARGV[8], 'd:' .. d)
end
if resumed then return {1, a.sess, withdraw} end
return {0, a.sess, withdraw}
"#,
    )
});

/// Renews a session's lease (the stream is alive), or marks it disconnected with the resume
/// grace as its lease (the stream broke).
///
/// KEYS: 1 agents, 2 ready, 3 staff, 4 leases. ARGV: 1 agent, 2 session, 3 now, 4 lease until,
/// 5 connected (1/0). Returns 1, or 0 if the session is not the agent's current one (replaced,
/// lapsed, or the live state was lost).
pub static TOUCH_SESSION: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local now = tonumber(ARGV[3])
local a = jget(KEYS[1], ARGV[1])
if not a or a.sess ~= ARGV[2] then return 0 end
a.conn = ARGV[5] == '1'
a.lease = tonumber(ARGV[4])
save_agent(KEYS[1], KEYS[3], KEYS[2], ARGV[1], a, depts_of(a), now)
redis.call('ZADD', KEYS[4], a.lease, ARGV[1])
return 1
"#,
    )
});

/// Renews the leases of connected sessions, in one call for many (a router renews the
/// sessions it holds in batches; see `crate::leases`). Only a session that is still current
/// and connected is renewed, so a renewal sent before a disconnect and run after it does not
/// bring the gone desktop back.
///
/// KEYS: 1 agents, 2 ready, 3 staff, 4 leases. ARGV: 1 now, 2 lease until, then agent and
/// session pairs. Returns the agents not renewed.
pub static RENEW_SESSIONS: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local now = tonumber(ARGV[1])
local lease = tonumber(ARGV[2])
local stale = {}
for i = 3, #ARGV - 1, 2 do
  local id = ARGV[i]
  local a = jget(KEYS[1], id)
  if a and a.sess == ARGV[i + 1] and a.conn then
    a.lease = lease
    save_agent(KEYS[1], KEYS[3], KEYS[2], id, a, depts_of(a), now)
    redis.call('ZADD', KEYS[4], lease, id)
  else
    stale[#stale + 1] = id
  end
end
return stale
"#,
    )
});

/// Sets presence. AVAILABLE needs a connected desktop stream and an enabled agent; OFFLINE
/// ends the session.
///
/// KEYS: 1 agents, 2 ready, 3 staff, 4 leases. ARGV: 1 agent, 2 presence, 3 away reason,
/// 4 note, 5 now, 6 events channel.
/// Returns {status, agent json, pending offer to withdraw or false}; status -2 unknown agent,
/// -4 with 'no_session' or 'disabled'.
pub static SET_PRESENCE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local now = tonumber(ARGV[5])
local a = jget(KEYS[1], ARGV[1])
if not a or not a.rec then return {-2, false, false} end
if ARGV[2] == 'available' then
  if a.rec.dis then return {-4, 'disabled', false} end
  if not connected(a, now) then return {-4, 'no_session', false} end
end
local withdraw = false
if ARGV[2] ~= 'available' and a.offer then withdraw = a.offer end
if a.pres ~= ARGV[2] or (a.why or '') ~= ARGV[3] or (a.note or '') ~= ARGV[4] then
  a.pres, a.ps = ARGV[2], now
  if ARGV[3] == '' then a.why = nil else a.why = ARGV[3] end
  a.note = ARGV[4]
end
if ARGV[2] == 'available' then a.missed = 0 end
if ARGV[2] == 'offline' then
  a.sess, a.conn, a.lease = nil, false, nil
  redis.call('ZREM', KEYS[4], ARGV[1])
end
save_agent(KEYS[1], KEYS[3], KEYS[2], ARGV[1], a, depts_of(a), now)
redis.call('PUBLISH', ARGV[6], 'a:' .. ARGV[1])
for d, _ in pairs(a.rec.depts or {}) do redis.call('PUBLISH', ARGV[6], 'd:' .. d) end
return {1, cjson.encode(a), withdraw}
"#,
    )
});

/// Signs out agents whose session lease ran out (a desktop gone longer than the resume grace,
/// or a router that died holding the stream).
///
/// KEYS: 1 agents, 2 ready, 3 staff, 4 leases. ARGV: 1 now, 2 limit, 3 events channel.
/// Returns the pending offers to withdraw.
pub static LAPSE_SESSIONS: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local now = tonumber(ARGV[1])
local due = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local withdraw = {}
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[4], id)
  local a = jget(KEYS[1], id)
  if a and a.sess and not has_session(a, now) then
    a.sess, a.conn, a.lease = nil, false, nil
    a.pres, a.why, a.note, a.ps = 'offline', nil, '', now
    if a.offer then table.insert(withdraw, a.offer) end
    save_agent(KEYS[1], KEYS[3], KEYS[2], id, a, depts_of(a), now)
    redis.call('PUBLISH', ARGV[3], 'a:' .. id)
  elseif a and a.lease then
    redis.call('ZADD', KEYS[4], a.lease, id)
  end
end
return withdraw
"#,
    )
});

/// Forgets what is no longer needed: tombstones older than the tombstone TTL and offers that
/// ended more than an hour ago.
///
/// KEYS: 1 tickets, 2 gone, 3 offers, 4 offer_end. ARGV: 1 tombstones before, 2 offers before,
/// 3 limit. Returns how many entries were dropped.
pub static PURGE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local n = 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))) do
  local t = jget(KEYS[1], id)
  if t and t.st == 'removed' then redis.call('HDEL', KEYS[1], id) end
  redis.call('ZREM', KEYS[2], id)
  n = n + 1
end
for _, rid in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))) do
  redis.call('HDEL', KEYS[3], rid)
  redis.call('ZREM', KEYS[4], rid)
  n = n + 1
end
return n
"#,
    )
});
