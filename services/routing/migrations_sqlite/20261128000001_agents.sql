-- Agent records of the routing service on SQLite, for the single-process dev mode: the same
-- table, columns and rules as migrations/ (PostgreSQL), translated.
--
-- * ids are TEXT in SQLite's default BINARY collation, byte order: keyset paging and ORDER BY
--   id agree with Rust's string order, as COLLATE "C" makes them in PostgreSQL.
-- * text[] and jsonb are JSON text; booleans are 0/1.
-- * times are INTEGER microseconds since the Unix epoch, UTC (tierline_runtime::sqlite::Stamp):
--   PostgreSQL's precision, and they compare as numbers.

CREATE TABLE agents (
    id              TEXT PRIMARY KEY NOT NULL CHECK (length(id) BETWEEN 1 AND 128),
    display_name    TEXT NOT NULL CHECK (length(display_name) BETWEEN 1 AND 200),
    -- JSON arrays, sorted and unique (written from sets).
    departments     TEXT NOT NULL DEFAULT '[]'
        CHECK (json_valid(departments) AND json_type(departments) = 'array'
               AND json_array_length(departments) <= 20),
    team_id         TEXT CHECK (length(team_id) BETWEEN 1 AND 64),
    skills          TEXT NOT NULL DEFAULT '[]'
        CHECK (json_valid(skills) AND json_type(skills) = 'array'
               AND json_array_length(skills) <= 50),
    -- Tickets per channel worked at once: {"chat": 3, "voice": 1}; a channel left out has 0.
    capacities      TEXT NOT NULL DEFAULT '{}'
        CHECK (json_valid(capacities) AND json_type(capacities) = 'object'),
    disabled        INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    -- Raised by one on every change; optimistic concurrency for UpsertAgent.
    version         INTEGER NOT NULL CHECK (version >= 1),
    create_time     INTEGER NOT NULL,
    update_time     INTEGER NOT NULL
-- Rows kept in id order: keyset pages and unfiltered lists read the table in order.
) WITHOUT ROWID;

-- ListAgents by team, in id order for keyset paging. A department filter scans in id order
-- (json_each over each row's departments) and stops at the page's end: dev-mode sizes.
CREATE INDEX agents_team_idx ON agents (team_id, id) WHERE team_id IS NOT NULL;
