/**
 * The Lua scripts that make each scheduler step atomic in Redis: a step that reads and then writes (join an
 * operation in flight or create it; claim the best job a worker matches and lease it; record a result only
 * for the lease holder) would race between frontends and workers if it took several round trips.
 *
 * Keys (P is the prefix, `larder:` by default). Scripts build key names from P, so the scheduler needs one
 * Redis (or a primary with replicas), not a Redis Cluster.
 *   P op:NAME       hash: job (JSON), stage, done 0|1, response (base64 ExecuteResponse), digest, instance,
 *                   merge, queue (platform key), score, at (queued since, Redis clock ms), attempts, lease (token
 *                   of the holder), worker, cancel, affinity (key, or ''), reply (the id of the frontend that
 *                   created it, whose reply channel hears its events too; '' for none)
 *                   w:PRINCIPAL (1 waiting, 0 detached by its own cancel), waiters (recorded), waiting (count)
 *   P merge:KEY     string: the name of the operation in flight for a merge key
 *   P queue:PKEY    sorted set of queued operation names, by priority then arrival (one per platform)
 *   P queues        hash: platform key → the constraints the claim script matches (`{"c":{…},"r":"local"}`)
 *   P leases        sorted set: leased operation names by lease expiry (Redis clock, ms)
 *   P workers       hash: worker id → {"s": spec, "w": wake key, "t": last heartbeat, Redis clock ms,
 *                   "r": the worker's report (JSON: running, slots, done, failed), for status pages}
 *   P unserved      hash: platform key → since when its queue has held jobs that no live worker can take
 *   P wake:WKEY     list: one marker per job queued for workers of one platform; they BLPOP on it
 *   P wake:slot:ID  list: what is handed to one waiting worker slot alone: jobs leased to it by submit (JSON
 *                   {n: name, j: job, a: attempts, t: lease token, r: 1 when the slot is still registered as
 *                   waiting, for its worker's other free slots}) and plain markers ('1') that make it look again
 *   P idle          hash: worker slot id → its registration while it waits for work (JSON {w: wake key, t: lease
 *                   token, l: leaseMs, k: affinity keys it is warm for, c: how many jobs it takes (its worker's
 *                   free slots)})
 *   P idle:WKEY     set: ids of the slots of one worker platform waiting for work
 *   P warm:AKEY     set: ids of waiting slots warm for affinity key AKEY (a job's persistentWorkerKey and silo)
 *   P ev:NAME       pub/sub channel: the operation went to a worker ('executing'), finished ('done:' and its
 *                   response), changed otherwise ('changed'), or its run is to stop ('cancel'); for followers on
 *                   frontends other than the one that created it (WaitExecution, merged submissions)
 *   P reply:ID      pub/sub channel of one frontend, subscribed once for its life: the events of every operation
 *                   it created, as 'NAME EVENT', so that its submitters follow them without a SUBSCRIBE each
 *   P ev:slot:ID    pub/sub channel: the name of an operation leased to worker slot ID whose run is to stop
 *   P stats         hash: submitted, merged, completed
 * Stages are REAPI's ExecutionStage numbers: 2 QUEUED, 3 EXECUTING, 4 COMPLETED.
 */

/** Redis's own clock in ms: every frontend and worker agrees on lease and heartbeat expiry through it. */
const NOW = `local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

/**
 * Whether worker entry `w` (decoded) is live: it heartbeat less than heartbeatMs ago, by Redis's clock. The
 * reader's heartbeatMs counts, not anything the entry says, and a time in the future (written by hand) is not
 * believed, so no entry stays live without being renewed.
 */
const IS_LIVE = `
local function isLive(w, now, heartbeatMs)
  local t = tonumber(w.t)
  return t ~= nil and t <= now and now - t < heartbeatMs
end`;

/** Whether a worker's spec (decoded, {p, r}) satisfies a platform queue's (decoded, {c, r}): what claim matches. */
const OFFERS = `
local function offers(worker, spec)
  local runner = false
  for _, r in ipairs(worker.r) do if r == spec.r then runner = true end end
  if not runner then return false end
  for name, values in pairs(spec.c) do
    local have = worker.p[name]
    if not have then return false end
    for _, v in ipairs(values) do
      local found = false
      for _, h in ipairs(have) do if h == v then found = true end end
      if not found then return false end
    end
  end
  return true
end`;

/**
 * Publishes an event of operation `name` on its own channel and on the reply channel of the frontend that created
 * it (scripts.ts header): each follower hears it once, on whichever channel it listens.
 */
const TELL = `
local function tell(P, name, message)
  redis.call('PUBLISH', P .. 'ev:' .. name, message)
  local reply = redis.call('HGET', P .. 'op:' .. name, 'reply')
  if reply and reply ~= '' then redis.call('PUBLISH', P .. 'reply:' .. reply, name .. ' ' .. message) end
end`;

/** Marks operation P..'op:'..name done with `response`, once; shared by complete, cancel and sweep. */
const FINISH = `${TELL}
local function finish(P, name, response, retainMs)
  local op = P .. 'op:' .. name
  local merge = redis.call('HGET', op, 'merge')
  redis.call('HSET', op, 'done', '1', 'stage', '4', 'response', response)
  redis.call('HDEL', op, 'lease', 'job')
  redis.call('ZREM', P .. 'leases', name)
  if merge and merge ~= '' and redis.call('GET', P .. 'merge:' .. merge) == name then redis.call('DEL', P .. 'merge:' .. merge) end
  redis.call('PEXPIRE', op, retainMs)
  redis.call('HINCRBY', P .. 'stats', 'completed', 1)
  tell(P, name, 'done:' .. response)
end`;

/** Ends worker slot `id`'s registration as waiting (P idle, P idle:*, P warm:*); returns it (decoded) or nil. */
const UNREGISTER = `
local function unregister(P, id)
  local text = redis.call('HGET', P .. 'idle', id)
  if not text then return nil end
  local registration = cjson.decode(text)
  redis.call('SREM', P .. 'idle:' .. registration.w, id)
  for _, key in ipairs(registration.k) do redis.call('SREM', P .. 'warm:' .. key, id) end
  redis.call('HDEL', P .. 'idle', id)
  return registration
end`;

/** Registers worker slot `id` as waiting for up to `capacity` jobs (P idle, P idle:WKEY, P warm:AKEY). */
const REGISTER = `
local function register(P, id, wakeKey, token, leaseMs, keys, capacity)
  redis.call('HSET', P .. 'idle', id, cjson.encode({w = wakeKey, t = token, l = leaseMs, k = keys, c = capacity}))
  redis.call('SADD', P .. 'idle:' .. wakeKey, id)
  for _, key in ipairs(keys) do redis.call('SADD', P .. 'warm:' .. key, id) end
end`;

/** How far down the queues a claim looks for a job its slot is warm for. */
const AFFINITY_WINDOW = 32;

/** Puts a leased operation back at its place in its platform queue. */
const REQUEUE = `
local function requeue(P, name)
  local op = P .. 'op:' .. name
  local queue, score = unpack(redis.call('HMGET', op, 'queue', 'score'))
  redis.call('HDEL', op, 'lease', 'worker')
  redis.call('HSET', op, 'stage', '2')
  redis.call('ZADD', P .. 'queue:' .. queue, score, name)
  redis.call('ZREM', P .. 'leases', name)
  tell(P, name, 'changed')
  return queue
end`;

/**
 * The claim of worker slot workerId (its spec decoded; ARGV[from…]: the affinity keys it is warm for): a job leased
 * to it as {name, job, attempts, token}, or nil. First a job submit handed to the slot while it was registered as
 * waiting (its lease renewed); else the most urgent queued job of every platform queue the worker satisfies, with
 * one of a key it is warm for first among the first AFFINITY_WINDOW; else nothing, the platform's stale wake
 * markers are dropped, and the slot is registered as waiting for up to `capacity` jobs (REGISTER) with `token`, so
 * that submit can hand it the next jobs it could run. Every claim first ends the slot's earlier registration.
 * Stage EXECUTING: the job left the queue for a worker.
 */
const CLAIM = `${OFFERS}${UNREGISTER}${REGISTER}
local function claim(P, workerSpec, workerId, token, leaseMs, wakeKey, capacity, from, now)
  unregister(P, workerId)
  local own = P .. 'wake:slot:' .. workerId
  for _ = 1, 100 do
    local item = redis.call('LPOP', own)
    if not item then break end
    if item ~= '1' then
      local handed = cjson.decode(item)
      local op = P .. 'op:' .. handed.n
      local lease, done = unpack(redis.call('HMGET', op, 'lease', 'done'))
      if lease == handed.t and done == '0' then
        redis.call('ZADD', P .. 'leases', 'XX', now + leaseMs, handed.n)
        return {handed.n, handed.j, handed.a, handed.t}
      end
    end
  end
  local warm, keys = {}, {}
  for i = from, #ARGV do
    warm[ARGV[i]] = true
    table.insert(keys, ARGV[i])
  end
  local queues = redis.call('HGETALL', P .. 'queues')
  local offered = {}
  for i = 1, #queues, 2 do
    if offers(workerSpec, cjson.decode(queues[i + 1])) then table.insert(offered, P .. 'queue:' .. queues[i]) end
  end
  local bestName, bestScore
  if #keys == 0 then
    -- Nothing to weigh but urgency: the head of each queue.
    for _, queue in ipairs(offered) do
      local head = redis.call('ZRANGE', queue, 0, 0, 'WITHSCORES')
      if head[1] and (not bestScore or tonumber(head[2]) < bestScore) then bestName, bestScore = head[1], tonumber(head[2]) end
    end
  else
    local candidates = {}
    for _, queue in ipairs(offered) do
      local window = redis.call('ZRANGE', queue, 0, ${AFFINITY_WINDOW - 1}, 'WITHSCORES')
      for i = 1, #window, 2 do table.insert(candidates, {window[i], tonumber(window[i + 1])}) end
    end
    table.sort(candidates, function(a, b) return a[2] < b[2] end)
    for i = 1, math.min(#candidates, ${AFFINITY_WINDOW}) do
      local name = candidates[i][1]
      if warm[redis.call('HGET', P .. 'op:' .. name, 'affinity') or ''] then bestName = name break end
      if not bestScore then bestName, bestScore = name, candidates[i][2] end
    end
  end
  if not bestName then
    -- Every job queued for this platform is in the queues just searched: the markers still in its wake list are of
    -- jobs that claims took without waiting. Left there, they would wake idle slots for nothing, one by one.
    redis.call('DEL', P .. 'wake:' .. wakeKey)
    register(P, workerId, wakeKey, token, leaseMs, keys, capacity)
    return nil
  end
  local op = P .. 'op:' .. bestName
  redis.call('ZREM', P .. 'queue:' .. redis.call('HGET', op, 'queue'), bestName)
  local job = redis.call('HGET', op, 'job')
  if not job then return {bestName, '', 0, token} end
  local attempts = redis.call('HINCRBY', op, 'attempts', 1)
  redis.call('HSET', op, 'lease', token, 'worker', workerId, 'stage', '3')
  redis.call('ZADD', P .. 'leases', now + leaseMs, bestName)
  tell(P, bestName, 'executing')
  return {bestName, job, attempts, token}
end`;

export const SCRIPTS = {
  /**
   * ARGV: P, name, job, digest, mergeKey ('' never merges), queueKey, queueSpec, priority, ttlMs, instance,
   * waiter, maxWaiters, affinity key ('' for none), heartbeatMs, the submitting frontend's reply id ('' or absent
   * for none). Joins the operation in flight under mergeKey as
   * `waiter` (returns {name, 1}); or, when no live worker could run it, creates nothing and returns {'', 2,
   * every live worker's spec…} (the caller says what is missing); or creates it ({name, 0, stage: 3 handed or 2
   * queued, watched: 1 when the frontend's reply channel was subscribed already}) and either hands it
   * to a live worker slot waiting for work, one warm for its affinity key first (leased to it and pushed to its
   * own list: its blocking read returns the job itself), or queues it and pushes one wake marker per matching
   * worker platform. An operation with maxWaiters recorded takes no new waiter: the submission gets its own.
   */
  submit: {
    numberOfKeys: 0,
    lua: `${UNREGISTER}${REGISTER}${IS_LIVE}${OFFERS}
local P, name, job, digest, mergeKey, queue, spec, priority, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8]), ARGV[9]
local instance, waiter, maxWaiters = ARGV[10], 'w:' .. ARGV[11], tonumber(ARGV[12])
local affinity, heartbeatMs, reply = ARGV[13], tonumber(ARGV[14]), ARGV[15] or ''
if mergeKey ~= '' then
  local existing = redis.call('GET', P .. 'merge:' .. mergeKey)
  local joined = existing and P .. 'op:' .. existing
  local done, mine, recorded
  if joined then done, mine, recorded = unpack(redis.call('HMGET', joined, 'done', waiter, 'waiters')) end
  if done == '0' and (mine or (tonumber(recorded) or 0) < maxWaiters) then
    if mine ~= '1' then
      if not mine then redis.call('HINCRBY', joined, 'waiters', 1) end
      redis.call('HSET', joined, waiter, '1')
      redis.call('HINCRBY', joined, 'waiting', 1)
    end
    redis.call('HINCRBY', P .. 'stats', 'merged', 1)
    return {existing, 1}
  end
end
${NOW}
-- The live workers that could run it (their wake keys, once each), and every live worker's spec for the error.
local wakes, specs, seen = {}, {}, {}
local queueSpec = cjson.decode(spec)
local all = redis.call('HGETALL', P .. 'workers')
for i = 2, #all, 2 do
  local ok, w = pcall(cjson.decode, all[i])
  if ok and type(w) == 'table' and isLive(w, now, heartbeatMs) then
    table.insert(specs, w.s)
    local okSpec, workerSpec = pcall(cjson.decode, w.s)
    if okSpec and type(workerSpec) == 'table' and not seen[w.w] and offers(workerSpec, queueSpec) then
      seen[w.w] = true
      table.insert(wakes, w.w)
    end
  end
end
if #wakes == 0 then
  table.insert(specs, 1, 2)
  table.insert(specs, 1, '')
  return specs
end
if mergeKey ~= '' then
  -- A full operation stays the one later submissions join; this one is on its own.
  local existing = redis.call('GET', P .. 'merge:' .. mergeKey)
  if existing and redis.call('HGET', P .. 'op:' .. existing, 'done') == '0' then mergeKey = '' else redis.call('SET', P .. 'merge:' .. mergeKey, name, 'PX', ttl) end
end
-- Priority -1000..1000 (checked before) in the high part, arrival order in the low part: exact in a double up
-- to 4e12 jobs.
local score = string.format('%.0f', (priority + 1000) * 4e12 + redis.call('INCR', P .. 'seq'))
local op = P .. 'op:' .. name
redis.call('HSET', op, 'job', job, 'stage', '2', 'done', '0', 'digest', digest, 'instance', instance, 'merge', mergeKey, 'queue', queue, 'score', score, 'at', now, 'attempts', '0', waiter, '1', 'waiters', '1', 'waiting', '1', 'affinity', affinity, 'reply', reply)
redis.call('PEXPIRE', op, ttl)
redis.call('HSETNX', P .. 'queues', queue, spec)
-- A live worker could take it (checked above): whatever was seen of this queue before is past.
redis.call('HDEL', P .. 'unserved', queue)
redis.call('HINCRBY', P .. 'stats', 'submitted', 1)
-- Whether the submitting frontend's reply channel is subscribed (nobody else knows its id): then it hears every
-- change of the new operation from here on, and its submitter may follow it without reading it.
local watched = reply ~= '' and redis.call('PUBSUB', 'NUMSUB', P .. 'reply:' .. reply)[2] > 0 and 1 or 0
-- A waiting slot gets it at once: one warm for its key, else any of a matching platform (a live one). A slot
-- registered for more than one job stays registered for the rest; each job it is handed gets a token of its own.
local function waiting(set)
  for _ = 1, 100 do
    local slot = redis.call('SPOP', set)
    if not slot then return nil end
    local registration = unregister(P, slot)
    local okW, w = pcall(cjson.decode, redis.call('HGET', P .. 'workers', slot) or '')
    if registration and okW and type(w) == 'table' and isLive(w, now, heartbeatMs) then
      local capacity = tonumber(registration.c) or 1
      registration.r = capacity > 1 and 1 or 0
      if capacity > 1 then
        register(P, slot, registration.w, registration.t, registration.l, registration.k, capacity - 1)
        registration.t = registration.t .. '.' .. capacity
      end
      return slot, registration
    end
  end
  return nil
end
local slot, registration
if affinity ~= '' then slot, registration = waiting(P .. 'warm:' .. affinity) end
for _, wake in ipairs(wakes) do
  if slot then break end
  slot, registration = waiting(P .. 'idle:' .. wake)
end
if slot then
  redis.call('HSET', op, 'attempts', '1', 'lease', registration.t, 'worker', slot, 'stage', '3')
  redis.call('ZADD', P .. 'leases', now + registration.l, name)
  redis.call('RPUSH', P .. 'wake:slot:' .. slot, cjson.encode({n = name, j = job, a = 1, t = registration.t, r = registration.r}))
  return {name, 0, 3, watched}
end
redis.call('ZADD', P .. 'queue:' .. queue, score, name)
for _, wake in ipairs(wakes) do
  redis.call('RPUSH', P .. 'wake:' .. wake, '1')
  redis.call('LTRIM', P .. 'wake:' .. wake, -100000, -1)
end
return {name, 0, 2, watched}`,
  },

  /**
   * ARGV: P, worker spec, worker slot id, token, leaseMs, wake key, how many jobs the slot takes (its worker's
   * free slots; 1 if absent), affinity keys the slot is warm for… Returns what CLAIM claims: a job leased to this slot as {name, job, attempts, token}, or nil (the slot is then
   * registered as waiting).
   */
  claim: {
    numberOfKeys: 0,
    lua: `${TELL}${CLAIM}
local P = ARGV[1]
${NOW}
return claim(P, cjson.decode(ARGV[2]), ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7]) or 1, 8, now)`,
  },

  /**
   * ARGV: P, worker slot id. The slot leaves: it is no longer a live worker nor waiting, and the jobs handed to
   * it that it never read go back to their queues (not counted as attempts). Returns their platform keys.
   */
  leave: {
    numberOfKeys: 0,
    lua: `${UNREGISTER}${TELL}${REQUEUE}
local P, id = ARGV[1], ARGV[2]
unregister(P, id)
redis.call('HDEL', P .. 'workers', id)
local requeued = {}
for _, item in ipairs(redis.call('LRANGE', P .. 'wake:slot:' .. id, 0, -1)) do
  if item ~= '1' then
    local handed = cjson.decode(item)
    local op = P .. 'op:' .. handed.n
    local lease, done = unpack(redis.call('HMGET', op, 'lease', 'done'))
    if lease == handed.t and done == '0' then
      redis.call('HINCRBY', op, 'attempts', -1)
      table.insert(requeued, requeue(P, handed.n))
    end
  end
end
redis.call('DEL', P .. 'wake:slot:' .. id)
return requeued`,
  },

  /** ARGV: P, name, token, leaseMs. 1: renewed; 2: renewed, but cancellation was asked for; 0: the lease is lost. */
  renew: {
    numberOfKeys: 0,
    lua: `
local P, name, token, leaseMs = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
${NOW}
local op = P .. 'op:' .. name
local lease, done, cancel = unpack(redis.call('HMGET', op, 'lease', 'done', 'cancel'))
if lease ~= token or done ~= '0' then return 0 end
redis.call('ZADD', P .. 'leases', 'XX', now + leaseMs, name)
if cancel == '1' then return 2 end
return 1`,
  },

  /**
   * ARGV: P, name, token, response, retainMs, and, for a worker slot that takes its next job next, the claim's
   * ARGV (worker spec, slot id, token, leaseMs, wake key, capacity, warm keys…); or '' and the slot id of a worker
   * whose take is under way. Records the result if `token` still holds the lease, then claims for the slot when
   * asked (CLAIM): one round trip from one job to the next; or, for a take under way, lets the slot's registration
   * as waiting (if it is registered) take one job more: the slot this result frees. Returns {1 recorded | 0 not
   * (the lease was lost), and what the claim claimed (name, job, attempts, token), if anything}.
   */
  complete: {
    numberOfKeys: 0,
    lua: `${FINISH}${CLAIM}
local P, name, token, response, retainMs = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local op = P .. 'op:' .. name
local lease, done = unpack(redis.call('HMGET', op, 'lease', 'done'))
local recorded = 0
if lease == token and done == '0' then
  finish(P, name, response, retainMs)
  recorded = 1
end
if not ARGV[6] then return {recorded} end
if ARGV[6] == '' then
  local text = redis.call('HGET', P .. 'idle', ARGV[7])
  if text then
    local registration = cjson.decode(text)
    registration.c = (tonumber(registration.c) or 1) + 1
    redis.call('HSET', P .. 'idle', ARGV[7], cjson.encode(registration))
  end
  return {recorded}
end
${NOW}
local claimed = claim(P, cjson.decode(ARGV[6]), ARGV[7], ARGV[8], tonumber(ARGV[9]), ARGV[10], tonumber(ARGV[11]) or 1, 12, now)
if not claimed then return {recorded} end
return {recorded, claimed[1], claimed[2], claimed[3], claimed[4]}`,
  },

  /**
   * ARGV: P, name, token. A worker shutting down hands its job back (not counted as an attempt): returns the
   * platform queue key, so the caller can wake workers, or false when the lease was no longer held.
   */
  release: {
    numberOfKeys: 0,
    lua: `${TELL}${REQUEUE}
local P, name, token = ARGV[1], ARGV[2], ARGV[3]
local op = P .. 'op:' .. name
local lease, done = unpack(redis.call('HMGET', op, 'lease', 'done'))
if lease ~= token or done ~= '0' then return false end
redis.call('HINCRBY', op, 'attempts', -1)
return requeue(P, name)`,
  },

  /**
   * ARGV: P, name, waiter, operator (1|0), cancelled response, retainMs. A waiting waiter is detached (its
   * followers are told); when none is left, or when an operator that does not wait cancels, the run stops: a
   * queued operation finishes CANCELLED at once, a leased one is flagged and its holder told (pub/sub now, and
   * its next renewal), and nobody joins it any more. 0: unknown, or not the caller's; 1: done.
   */
  cancel: {
    numberOfKeys: 0,
    lua: `${FINISH}
local P, name, waiter, operator, response, retainMs = ARGV[1], ARGV[2], 'w:' .. ARGV[3], ARGV[4] == '1', ARGV[5], ARGV[6]
local op = P .. 'op:' .. name
local done, queue, mine, merge = unpack(redis.call('HMGET', op, 'done', 'queue', waiter, 'merge'))
if not done or (not mine and not operator) then return 0 end
if done == '1' then return 1 end
if mine == '1' then
  redis.call('HSET', op, waiter, '0')
  local waiting = redis.call('HINCRBY', op, 'waiting', -1)
  tell(P, name, 'changed')
  if waiting > 0 then return 1 end
elseif not operator then
  return 1
end
if merge and merge ~= '' and redis.call('GET', P .. 'merge:' .. merge) == name then redis.call('DEL', P .. 'merge:' .. merge) end
if redis.call('ZREM', P .. 'queue:' .. queue, name) == 1 then
  finish(P, name, response, retainMs)
  return 1
end
redis.call('HSET', op, 'cancel', '1')
tell(P, name, 'cancel')
local holder = redis.call('HGET', op, 'worker')
if holder then redis.call('PUBLISH', P .. 'ev:slot:' .. holder, name) end
return 1`,
  },

  /**
   * ARGV: P, maxAttempts, gave-up response, cancelled response, retainMs. Every expired lease (its worker
   * stopped renewing: crashed, killed, cut off) is requeued, or finished with the gave-up response after
   * maxAttempts deliveries, or CANCELLED when that was asked for. Returns the platform keys requeued into.
   * Any process may run it at any time: it is one atomic step, and an expired lease is handled once.
   */
  sweep: {
    numberOfKeys: 0,
    lua: `${FINISH}${REQUEUE}
local P, maxAttempts, gaveUp, cancelled, retainMs = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
${NOW}
local requeued = {}
for _, name in ipairs(redis.call('ZRANGEBYSCORE', P .. 'leases', '-inf', now, 'LIMIT', 0, 100)) do
  local op = P .. 'op:' .. name
  local done, attempts, cancel = unpack(redis.call('HMGET', op, 'done', 'attempts', 'cancel'))
  if done ~= '0' then
    redis.call('ZREM', P .. 'leases', name)
  elseif cancel == '1' then
    finish(P, name, cancelled, retainMs)
  elseif tonumber(attempts) >= maxAttempts then
    finish(P, name, gaveUp, retainMs)
  else
    table.insert(requeued, requeue(P, name))
  end
end
return requeued`,
  },

  /** ARGV: P, id, spec, wake key, report (JSON text, or ''). A worker's heartbeat, stamped with Redis's clock. */
  heartbeat: {
    numberOfKeys: 0,
    lua: `
local P, id, spec, wake, report = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
${NOW}
local entry = {s = spec, w = wake, t = now}
if report and report ~= '' then entry.r = report end
redis.call('HSET', P .. 'workers', id, cjson.encode(entry))
return 1`,
  },

  /**
   * ARGV: P. Per platform queue: {spec, queued, ms the oldest has waited (-1: none)}, flat. Scores order a
   * queue by priority, then arrival, so within one priority the head is the oldest: only the head of each
   * priority present is read (one for most queues; at most the 2,001 priorities), never the whole queue.
   */
  queueFigures: {
    numberOfKeys: 0,
    lua: `
local P = ARGV[1]
${NOW}
local out = {}
local queues = redis.call('HGETALL', P .. 'queues')
for i = 1, #queues, 2 do
  local key = P .. 'queue:' .. queues[i]
  local queued = redis.call('ZCARD', key)
  local oldest = nil
  local from = '-inf'
  for _ = 1, (queued > 0 and 2001 or 0) do
    local head = redis.call('ZRANGEBYSCORE', key, from, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
    if not head[1] then break end
    local at = tonumber(redis.call('HGET', P .. 'op:' .. head[1], 'at'))
    if at and (not oldest or at < oldest) then oldest = at end
    from = string.format('%.0f', (math.floor(tonumber(head[2]) / 4e12) + 1) * 4e12)
  end
  table.insert(out, queues[i + 1])
  table.insert(out, queued)
  table.insert(out, oldest and math.max(0, now - oldest) or -1)
end
return out`,
  },

  /**
   * ARGV: P, heartbeatMs. The specs and wake keys of live workers, {spec, wake, …}; forgets entries silent
   * for an hour, and those that are not a heartbeat of this version (no time, or a time in the future).
   */
  liveWorkers: {
    numberOfKeys: 0,
    lua: `${IS_LIVE}
local P, heartbeatMs = ARGV[1], tonumber(ARGV[2])
${NOW}
local out = {}
local all = redis.call('HGETALL', P .. 'workers')
for i = 1, #all, 2 do
  local ok, w = pcall(cjson.decode, all[i + 1])
  local t = ok and type(w) == 'table' and tonumber(w.t)
  if t and isLive(w, now, heartbeatMs) then
    table.insert(out, w.s)
    table.insert(out, w.w)
  elseif not t or t < now - 3600000 or t > now + 60000 then
    redis.call('HDEL', P .. 'workers', all[i])
  end
end
return out`,
  },

  /**
   * ARGV: P, heartbeatMs, graceMs, response, retainMs. Fails the queued jobs of every platform queue that no
   * live worker has been able to take for graceMs (its workers left or stopped heartbeating; or the only ones
   * that matched were never real) with `response`, so no action waits for a worker that is gone. The grace
   * lets a worker restart without failing what waits for it. Returns how many jobs failed.
   */
  stranded: {
    numberOfKeys: 0,
    lua: `${FINISH}${IS_LIVE}${OFFERS}
local P, heartbeatMs, graceMs, response, retainMs = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], ARGV[5]
${NOW}
local live = {}
local all = redis.call('HGETALL', P .. 'workers')
for i = 2, #all, 2 do
  local ok, w = pcall(cjson.decode, all[i])
  if ok and type(w) == 'table' and isLive(w, now, heartbeatMs) then
    local okSpec, spec = pcall(cjson.decode, w.s)
    if okSpec and type(spec) == 'table' then table.insert(live, spec) end
  end
end
local failed = 0
local queues = redis.call('HGETALL', P .. 'queues')
for i = 1, #queues, 2 do
  local key = P .. 'queue:' .. queues[i]
  if redis.call('ZCARD', key) == 0 then
    redis.call('HDEL', P .. 'unserved', queues[i])
  else
    local spec = cjson.decode(queues[i + 1])
    local served = false
    for _, w in ipairs(live) do if offers(w, spec) then served = true break end end
    local since = tonumber(redis.call('HGET', P .. 'unserved', queues[i]))
    if served then
      if since then redis.call('HDEL', P .. 'unserved', queues[i]) end
    elseif not since then
      redis.call('HSET', P .. 'unserved', queues[i], now)
    elseif now - since >= graceMs then
      for _, name in ipairs(redis.call('ZRANGE', key, 0, 999)) do
        redis.call('ZREM', key, name)
        if redis.call('EXISTS', P .. 'op:' .. name) == 1 then
          finish(P, name, response, retainMs)
          failed = failed + 1
        end
      end
    end
  end
end
return failed`,
  },
} as const;

export type ScriptName = keyof typeof SCRIPTS;
