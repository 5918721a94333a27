-- Agent records of the routing service: who the agents are and what they can do. Only this
-- service reads or writes them. Live status (presence, sessions, active tickets) is in Redis.

CREATE TABLE agents (
    -- Free text shared with the ticket service ("agent-7", a UUID). Byte-order collation, so
    -- keyset paging and ORDER BY id agree with Rust's string order whatever the database locale.
    id              text COLLATE "C" PRIMARY KEY CHECK (char_length(id) BETWEEN 1 AND 128),
    display_name    text NOT NULL CHECK (char_length(display_name) BETWEEN 1 AND 200),
    -- Sorted and unique (written from sets).
    departments     text[] NOT NULL DEFAULT '{}' CHECK (cardinality(departments) <= 20),
    team_id         text CHECK (char_length(team_id) BETWEEN 1 AND 64),
    skills          text[] NOT NULL DEFAULT '{}' CHECK (cardinality(skills) <= 50),
    -- Tickets per channel worked at once: {"chat": 3, "voice": 1}; a channel left out has 0.
    -- JSON so a new channel needs no migration.
    capacities      jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(capacities) = 'object'),
    disabled        boolean NOT NULL DEFAULT false,
    -- Raised by one on every change; optimistic concurrency for UpsertAgent.
    version         bigint NOT NULL CHECK (version >= 1),
    create_time     timestamptz NOT NULL,
    update_time     timestamptz NOT NULL
);

-- ListAgents by department: `departments @> ARRAY[$1]` (GIN serves @>, not `$1 = ANY(...)`).
CREATE INDEX agents_departments_idx ON agents USING gin (departments);
-- ListAgents by team, in id order for keyset paging.
CREATE INDEX agents_team_idx ON agents (team_id, id) WHERE team_id IS NOT NULL;
