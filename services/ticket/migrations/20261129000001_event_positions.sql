-- The log's public order, assigned after commit by the sequencer (store/pg.rs, `publish`).
--
-- Writers append events without any global lock, so they commit concurrently and share WAL
-- flushes; `sequence` is drawn at insert and can become visible out of order. Readers that page
-- the log (WatchTicketEvents, the relays) page by `position` instead: one sequencer at a time
-- gives every committed, unpositioned event the next positions, in `sequence` order, and commits,
-- so every snapshot sees a gap-free prefix of positions. Per ticket, `sequence` order is already
-- change order (writers hold the ticket's row lock), so history pages by `sequence`.
ALTER TABLE ticket_events ADD COLUMN position bigint;

-- Events written before this migration were appended under a global lock: their sequence is
-- already a gap-free order, and relay cursors count in it.
UPDATE ticket_events SET position = sequence;

CREATE UNIQUE INDEX ticket_events_position_key ON ticket_events (position);
-- What the sequencer positions next: small, since events leave it within milliseconds.
CREATE INDEX ticket_events_unpositioned_idx ON ticket_events (sequence) WHERE position IS NULL;
-- Where a stream may start: the oldest positioned event that still has its snapshot.
DROP INDEX ticket_events_retained_idx;
CREATE INDEX ticket_events_retained_idx ON ticket_events (position)
    WHERE snapshot IS NOT NULL AND position IS NOT NULL;

-- The writing transaction's id is no longer read: readers rely on positions.
ALTER TABLE ticket_events DROP COLUMN xid;
