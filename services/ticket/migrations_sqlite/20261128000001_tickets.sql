-- The ticket service's tables on SQLite: the same tables, columns, rules and indexes as
-- migrations/ (PostgreSQL), translated.
--
-- * ids (uuid) are 16-byte BLOBs: they compare byte by byte, as PostgreSQL's uuid does, so
--   lists page in the same (creation, id) order.
-- * times are INTEGER microseconds since the Unix epoch, UTC: PostgreSQL's precision, and they
--   sort and compare as numbers (RFC 3339 text would not: "…00Z" sorts after "…00.5Z").
-- * jsonb and text[] are JSON text (arrays as JSON arrays); booleans are 0/1; bytea is BLOB.
-- * `ticket_events.sequence` is INTEGER PRIMARY KEY AUTOINCREMENT: increasing and never reused
--   once committed, as bigserial. There is no `xid` column and no advisory lock: SQLite has one
--   writer at a time (every write is a BEGIN IMMEDIATE transaction), so transactions commit in
--   the order they draw sequences and every reader sees a gap-free prefix of the log.
-- * The number's regular expression is a GLOB (SQLite has no `~`).

CREATE TABLE tickets (
    id                      BLOB PRIMARY KEY NOT NULL,
    -- Eight digits, shown as T-4821-7730; random, so numbers leak no volumes.
    number                  TEXT NOT NULL UNIQUE
                            CHECK (length(number) = 8 AND number NOT GLOB '*[^0-9]*'),
    idempotency_key         TEXT NOT NULL UNIQUE,
    -- Fingerprint of the creating request: the same key with another request is refused.
    request_fingerprint     BLOB NOT NULL,

    customer_id             BLOB,
    customer_resolution     TEXT NOT NULL CHECK (customer_resolution IN ('resolved', 'pending')),
    caller_kind             TEXT,
    caller_value            TEXT,
    caller_region           TEXT,
    snapshot_tier           TEXT CHECK (snapshot_tier IN ('A', 'B', 'C')),
    snapshot_key_account    INTEGER NOT NULL DEFAULT 0 CHECK (snapshot_key_account IN (0, 1)),
    snapshot_account_manager TEXT,
    snapshot_display_name   TEXT,
    snapshot_at             INTEGER,

    channel                 TEXT NOT NULL,
    type                    TEXT NOT NULL,
    category                TEXT NOT NULL,
    department              TEXT NOT NULL,
    severity                TEXT NOT NULL,
    priority                INTEGER NOT NULL,
    subject                 TEXT NOT NULL,
    description             TEXT NOT NULL DEFAULT '',
    language_code           TEXT NOT NULL DEFAULT '',
    customer_emotion        TEXT,
    desired_outcome         TEXT NOT NULL DEFAULT '',
    compensation            TEXT CHECK (compensation IS NULL OR json_valid(compensation)),
    root_cause              TEXT,
    triage_label            TEXT,
    resolution_summary      TEXT NOT NULL DEFAULT '',
    tags                    TEXT NOT NULL DEFAULT '[]' CHECK (json_type(tags) = 'array'),
    attributes              TEXT NOT NULL DEFAULT '{}' CHECK (json_type(attributes) = 'object'),
    -- Effective skills (category + language + own) for routing, and the ticket's own.
    required_skills         TEXT NOT NULL DEFAULT '[]' CHECK (json_type(required_skills) = 'array'),
    own_skills              TEXT NOT NULL DEFAULT '[]' CHECK (json_type(own_skills) = 'array'),

    state                   TEXT NOT NULL,
    state_reason            TEXT NOT NULL DEFAULT '',
    hold_reason             TEXT,
    cancel_reason           TEXT,
    assigned_agent_id       TEXT,
    handler_agent_ids       TEXT NOT NULL DEFAULT '[]' CHECK (json_type(handler_agent_ids) = 'array'),
    enqueue_at              INTEGER NOT NULL,
    pickup_due_at           INTEGER NOT NULL,
    preferred_agent_id      TEXT,
    reservation_id          BLOB,
    merged_into             BLOB REFERENCES tickets (id),

    -- The SLA clock (see domain/sla.rs), stored so the breach monitor needs no recomputation.
    sla                     TEXT NOT NULL CHECK (json_valid(sla)),
    sla_status              TEXT NOT NULL,
    -- Next instant something happens to the ticket by itself (an SLA status change, the
    -- follow-up falling due, an automatic close); the timer worker's index.
    timer_at                INTEGER,

    follow_up               TEXT CHECK (follow_up IS NULL OR json_valid(follow_up)),
    follow_up_due_at        INTEGER,
    follow_up_due_raised    INTEGER NOT NULL DEFAULT 0 CHECK (follow_up_due_raised IN (0, 1)),
    auto_close_at           INTEGER,

    version                 INTEGER NOT NULL DEFAULT 1,
    created_at              INTEGER NOT NULL,
    updated_at              INTEGER NOT NULL,
    resolved_at             INTEGER,
    closed_at               INTEGER
);

-- ListTickets pages by (created_at, id) within each filter; the common filters each get an
-- index, live subsets partial ones.
CREATE INDEX tickets_created_idx ON tickets (created_at, id);
CREATE INDEX tickets_state_idx ON tickets (state, created_at, id);
CREATE INDEX tickets_customer_idx ON tickets (customer_id, created_at, id);
CREATE INDEX tickets_agent_idx ON tickets (assigned_agent_id, created_at, id) WHERE assigned_agent_id IS NOT NULL;
CREATE INDEX tickets_department_idx ON tickets (department, state, created_at, id);
CREATE INDEX tickets_category_idx ON tickets (category, created_at, id);
CREATE INDEX tickets_tier_idx ON tickets (snapshot_tier, created_at, id);
CREATE INDEX tickets_sla_status_idx ON tickets (sla_status, created_at, id)
    WHERE sla_status IN ('at_risk', 'breached', 'paused');
-- The timer worker: tickets due for a change by themselves, by an index range scan.
CREATE INDEX tickets_timer_idx ON tickets (timer_at) WHERE timer_at IS NOT NULL;
-- Intake accepted while the customer service was down, waiting to be reconciled.
CREATE INDEX tickets_pending_customer_idx ON tickets (created_at) WHERE customer_resolution = 'pending';

CREATE TABLE ticket_comments (
    id              BLOB PRIMARY KEY NOT NULL,
    ticket_id       BLOB NOT NULL REFERENCES tickets (id),
    visibility      TEXT NOT NULL CHECK (visibility IN ('public', 'internal')),
    author_kind     TEXT NOT NULL,
    author_id       TEXT NOT NULL DEFAULT '',
    body            TEXT NOT NULL,
    channel         TEXT NOT NULL,
    first_response  INTEGER NOT NULL DEFAULT 0 CHECK (first_response IN (0, 1)),
    created_at      INTEGER NOT NULL,
    idempotency_key TEXT UNIQUE,
    request_fingerprint BLOB
);

CREATE INDEX ticket_comments_ticket_idx ON ticket_comments (ticket_id, created_at, id);

CREATE TABLE ticket_links (
    ticket_id        BLOB NOT NULL REFERENCES tickets (id),
    linked_ticket_id BLOB NOT NULL REFERENCES tickets (id),
    kind             TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    PRIMARY KEY (ticket_id, linked_ticket_id)
) WITHOUT ROWID;

-- Every change to every ticket, append-only: the history (kept for the ticket's life) and the
-- transactional outbox (WatchTicketEvents and the relays read it by `sequence`).
CREATE TABLE ticket_events (
    sequence          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id          BLOB NOT NULL UNIQUE,
    ticket_id         BLOB NOT NULL REFERENCES tickets (id),
    ticket_version    INTEGER NOT NULL,
    kind              TEXT NOT NULL,
    actor_kind        TEXT NOT NULL,
    actor_id          TEXT NOT NULL DEFAULT '',
    from_state        TEXT NOT NULL,
    to_state          TEXT NOT NULL,
    reason            TEXT NOT NULL DEFAULT '',
    changed_fields    TEXT NOT NULL DEFAULT '[]' CHECK (json_type(changed_fields) = 'array'),
    comment_id        BLOB,
    related_ticket_id BLOB,
    event_at          INTEGER NOT NULL,
    -- The ticket after the change, protobuf-encoded; cleared after the retention period.
    snapshot          BLOB
);

CREATE INDEX ticket_events_ticket_idx ON ticket_events (ticket_id, sequence);
-- The retained part of the log: where a stream may start, and what the pruner clears next.
CREATE INDEX ticket_events_retained_idx ON ticket_events (sequence) WHERE snapshot IS NOT NULL;
CREATE INDEX ticket_events_retained_at_idx ON ticket_events (event_at) WHERE snapshot IS NOT NULL;

-- How far each relay (routing, customer timeline) has delivered. One holder at a time per
-- relay is an in-process lock here (see store::sqlite), not a row lock.
CREATE TABLE relay_cursors (
    name     TEXT PRIMARY KEY NOT NULL,
    sequence INTEGER NOT NULL DEFAULT 0
);

-- Each SLA target's outcome, recorded once.
CREATE TABLE ticket_sla_outcomes (
    ticket_id   BLOB NOT NULL REFERENCES tickets (id),
    target      TEXT NOT NULL CHECK (target IN ('first_response', 'resolution')),
    outcome     TEXT NOT NULL CHECK (outcome IN ('met', 'breached')),
    due_at      INTEGER NOT NULL,
    achieved_at INTEGER,
    recorded_at INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER)),
    PRIMARY KEY (ticket_id, target)
) WITHOUT ROWID;
