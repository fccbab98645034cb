// Package natsjs is chatd's storage on NATS JetStream, shared by every node of a cluster: it
// implements room.Store (the same contract as store/sqlite, checked by store/storetest) with
// JetStream streams and key-value buckets, created with Config.Replicas copies, so that no node
// holds anything another needs; and Relay (room.HistoryRelay) carries the rooms' lines between
// the nodes on the stream that is their history.
//
// # Where things are (prefix "chatd")
//
// History: one stream, chatd_rooms, of every room's lines: subject chatd.room.<room>.msg for
// messages and actions, and chatd.room.<room>.notice reserved for the relay's notices (below),
// so that a room's lines, whatever their kind, are one sequence. <room> is the room's name
// without its '#' and with '.' written '=' (room names are a-z 0-9 _ . -, and '.' separates
// subject tokens; '=' is in no name, so the mapping is one to one). A message's ID is its stream
// sequence: it increases along each room. The stream's limits keep Config.KeepMessages lines per
// subject (so per room) and drop lines older than Config.KeepFor, as store/sqlite's retention.
//
// Key-value buckets, each record read and changed with compare-and-set (an update names the
// revision it read; a create fails if the key exists), so that every cap and single-winner rule
// of the contract holds between nodes as it does between goroutines:
//
//   - chatd_identities: an identity by its folded name, with its active and pending keys, so that
//     the cap on a name's keys is one record's. Claim creates the key: of two first logins
//     racing for a name, on any nodes, exactly one creates it.
//   - chatd_keys: each key fingerprint's names, for NamesOfKey and the cap on a key's names. A
//     claim or confirmation puts the name there before writing the identity, so that concurrent
//     ones count each other; an entry whose identity does not have the key lapses after a minute
//     (a claim that died half way), and reads check each entry against the identity.
//   - chatd_roomlist: each room with its owner, topic, flag and invitations, and its generation
//     (the revision that created it). Lines and memberships carry the generation, so that
//     nothing of a deleted room (a line still in flight, a membership) passes to a room made
//     again under its name. Every store watches this bucket (starting the watch afresh when its
//     connection comes back), so that Append knows without waiting whether a room exists and of
//     which generation; a read that finds a room missing asks the bucket.
//   - chatd_members: a registered person's rooms, one record per name.
//   - chatd_dms: a recipient's waiting private messages, one record, so that its three caps are
//     checked and TakeDMs empties it in one compare-and-set each.
//   - chatd_tokens: a name's web tokens (one record: the cap, a take and a revocation are one
//     compare-and-set), and each hash's name (created, so a hash is stored once).
//   - chatd_bans (by ID) and chatd_settings (by key).
//   - chatd_migrated: what "chatd migrate" copied from single-node databases, so that it copies
//     each record once (import.go); made by the first migration only.
//
// IDs of bans, private messages and web tokens are the sequence numbers of stream chatd_ids,
// which keeps one empty message per kind: unique and increasing across nodes, in one request.
//
// # Costs
//
// Per line: Append only queues. Per login: a few key reads (identity, memberships, queued
// messages). Recent and History read with JetStream's direct gets, which need no consumer:
// Recent counts the room's messages from the end backwards with growing steps (JetStream
// indexes messages by subject) and reads the newest n in one batch; History finds a time by
// bisecting the room's sequences, one small read a step (about 17 for 100 000 lines). Rooms and
// Bans read their whole bucket: chatd asks at start.
//
// # Append, and what happens when NATS is slow
//
// Append never waits: it puts the line in a queue of at most Config.MaxBacklog lines, which a
// publisher drains, up to Config.MaxInFlight lines awaiting their acknowledgement at once.
// A line whose publication fails is published again, with backoff, until it is stored; it
// carries a message ID, so that the stream drops a second copy of a line that was stored after
// all (within the stream's 2-minute duplicate window). Lines after it wait: while NATS is down,
// the queue fills, and once full Append drops lines, logs the first drop and the next Flush
// returns an error saying how many went. A line retried after a failure may be stored after
// lines appended later than it (its ID then is the later one; its time is its own). Close gives
// the queue Config.Timeout to empty and reports what it could not publish.
//
// # Reading one's own writes, and replicas
//
// Key-value reads are JetStream's direct gets, which any up-to-date replica may answer: with
// Replicas > 1, a read on one node may miss a write made a moment before on another. Writes are
// never lost to it (a compare-and-set from a stale read fails and is retried). This store's own
// lines are never missed: a read of the history waits until the replica that answers has the
// newest line this store had acknowledged.
//
// # The relay, in cluster mode
//
// Relay (room.HistoryRelay) publishes every line said in a room to these same subjects,
// chatd.room.<room>.msg for messages and actions and chatd.room.<room>.notice for notices (a
// topic set), so that the stream IS the history and its sequence the one order every node
// delivers in: one ordered consumer per node reads the stream and hands each line to the hub in
// stream order. The hub then skips Store.Append for relayed lines (KeepsHistory); Append remains
// for single-writer uses: storetest. ("chatd migrate" copies a SQLite history with Importer,
// which publishes each line with its own time, in order, resumably.) A relayed
// line is the JSON object {"g": generation, "k": kind, "f": from, "t": text}, with "topic" on
// the notice that sets one: "at" is left out, so its time is the stream's time stamp (the
// leader's clock), which grows with the order and is the time every node shows. "g" may be 0
// (any generation of the room); kinds other than message (1) and action (2), such as notices
// (3), are skipped by Recent and History. A header, Chatd-Origin, names the relay and the
// session that said it, for the echo rules; the history has no use for it.
//
// # The cluster
//
// Cluster (room.Cluster) carries what is not a room's line, on core NATS rather than JetStream:
// nothing of it needs keeping, and a node that missed some asks again. Subjects
// chatd.cluster.presence (who is online on each node: numbered deltas, snapshots in parts when a
// node may have missed some, heartbeats, hello, ask and bye), chatd.cluster.events (what
// operators change: kicks, bans, mutes, rooms, the message of the day, web sign-outs) and
// chatd.cluster.dm.<node> (a private message to someone online on that node, as a request). A
// node not heard from for ClusterConfig.GoneAfter is gone with its people, but never while this
// node itself is cut off; a node back on NATS reads bans, rooms and the message of the day from
// the store again, as the events sent meanwhile never reached it.
package natsjs
