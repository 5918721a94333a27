-- The customer-profile service's tables on SQLite: the same tables, columns and rules as
-- migrations/ (PostgreSQL), translated.
--
-- * ids (uuid) are 16-byte BLOBs: they compare byte by byte, as PostgreSQL's uuid does, so
--   lists page in the same (UUIDv7, creation) order.
-- * times are INTEGER microseconds since the Unix epoch, UTC: PostgreSQL's precision, and they
--   sort and compare as numbers (RFC 3339 text would not: "…00Z" sorts after "…00.5Z").
-- * jsonb and text[] are JSON text; booleans are 0/1.
-- * customer_survivor() is Rust (store::sqlite::survivor); advisory locks are SQLite's single
--   writer (every write is a BEGIN IMMEDIATE transaction).

CREATE TABLE customers (
    id                    BLOB PRIMARY KEY NOT NULL,
    display_name          TEXT NOT NULL,
    form_of_address       TEXT NOT NULL DEFAULT '',
    kind                  TEXT NOT NULL CHECK (kind IN ('individual', 'organization')),
    relationship          TEXT NOT NULL CHECK (relationship IN ('direct', 'channel_partner', 'reseller')),
    segment               TEXT NOT NULL DEFAULT '',
    postal_address        TEXT CHECK (postal_address IS NULL OR json_valid(postal_address)),
    significant_dates     TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(significant_dates)),
    preferences           TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(preferences)),
    observations          TEXT NOT NULL DEFAULT '',
    attributes            TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(attributes)),
    credit_standing       TEXT NOT NULL CHECK (credit_standing IN ('unknown', 'good', 'watch', 'poor')),
    lifecycle_stage       TEXT NOT NULL CHECK (lifecycle_stage IN ('prospect', 'new', 'active', 'loyal', 'churned')),
    churn_reason          TEXT NOT NULL DEFAULT '',
    account_manager_id    TEXT,
    key_account           INTEGER NOT NULL DEFAULT 0 CHECK (key_account IN (0, 1)),
    unreasonable          INTEGER NOT NULL DEFAULT 0 CHECK (unreasonable IN (0, 1)),
    unreasonable_note     TEXT NOT NULL DEFAULT '',
    -- Millionths of the reporting currency.
    lifetime_value_micros INTEGER NOT NULL DEFAULT 0 CHECK (lifetime_value_micros >= 0),
    computed_tier         TEXT NOT NULL DEFAULT 'C' CHECK (computed_tier IN ('A', 'B', 'C')),
    override_tier         TEXT CHECK (override_tier IN ('A', 'B', 'C')),
    override_reason       TEXT,
    override_set_at       INTEGER,
    -- The tier in force, kept by SQLite so filters on it can use an index.
    tier                  TEXT GENERATED ALWAYS AS (COALESCE(override_tier, computed_tier)) VIRTUAL,
    -- Running satisfaction sums; means are derived.
    sat_count             INTEGER NOT NULL DEFAULT 0,
    sat_sum_c             REAL NOT NULL DEFAULT 0,
    sat_sum_expected      REAL NOT NULL DEFAULT 0,
    sat_sum_perceived     REAL NOT NULL DEFAULT 0,
    sat_last_c            REAL,
    sat_last_at           INTEGER,
    merged_into           BLOB REFERENCES customers (id),
    version               INTEGER NOT NULL DEFAULT 1,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL,
    deleted_at            INTEGER,
    idempotency_key       TEXT UNIQUE,
    CHECK ((override_tier IS NULL) = (override_reason IS NULL))
);

CREATE INDEX customers_live_idx ON customers (id) WHERE deleted_at IS NULL AND merged_into IS NULL;
CREATE INDEX customers_tier_idx ON customers (tier, id) WHERE deleted_at IS NULL AND merged_into IS NULL;
CREATE INDEX customers_segment_idx ON customers (segment, id) WHERE deleted_at IS NULL AND merged_into IS NULL;
CREATE INDEX customers_stage_idx ON customers (lifecycle_stage, id) WHERE deleted_at IS NULL AND merged_into IS NULL;
CREATE INDEX customers_manager_idx ON customers (account_manager_id, id)
    WHERE account_manager_id IS NOT NULL AND deleted_at IS NULL AND merged_into IS NULL;
CREATE INDEX customers_key_account_idx ON customers (id)
    WHERE key_account AND deleted_at IS NULL AND merged_into IS NULL;
-- Merges are followed from the merged id; a survivor's tombstones are found by this.
CREATE INDEX customers_merged_into_idx ON customers (merged_into) WHERE merged_into IS NOT NULL;

CREATE TABLE customer_identities (
    id          BLOB PRIMARY KEY NOT NULL,
    customer_id BLOB NOT NULL REFERENCES customers (id),
    kind        TEXT NOT NULL CHECK (kind IN ('phone', 'email', 'external_id')),
    -- Normalised: E.164 for phones, lower case for emails.
    value       TEXT NOT NULL,
    label       TEXT NOT NULL DEFAULT '',
    shared      INTEGER NOT NULL DEFAULT 0 CHECK (shared IN (0, 1)),
    -- Set while the customer is soft-deleted: the identity is free for others.
    released    INTEGER NOT NULL DEFAULT 0 CHECK (released IN (0, 1)),
    created_at  INTEGER NOT NULL,
    UNIQUE (customer_id, kind, value)
);

-- One owner per identity unless shared: the backstop behind the single writer.
CREATE UNIQUE INDEX customer_identities_owner_idx ON customer_identities (kind, value)
    WHERE NOT shared AND NOT released;
-- The IVR's lookup.
CREATE INDEX customer_identities_lookup_idx ON customer_identities (kind, value) WHERE NOT released;
CREATE INDEX customer_identities_customer_idx ON customer_identities (customer_id);

CREATE TABLE customer_interactions (
    id              BLOB PRIMARY KEY NOT NULL,
    customer_id     BLOB NOT NULL REFERENCES customers (id),
    channel         TEXT NOT NULL,
    direction       TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    summary         TEXT NOT NULL,
    promised        TEXT NOT NULL DEFAULT '',
    given           TEXT NOT NULL DEFAULT '',
    ticket_id       BLOB,
    agent_id        TEXT,
    occurred_at     INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    idempotency_key TEXT UNIQUE
);

CREATE INDEX customer_interactions_timeline_idx
    ON customer_interactions (customer_id, occurred_at DESC, id DESC);

CREATE TABLE customer_satisfaction (
    id              BLOB PRIMARY KEY NOT NULL,
    customer_id     BLOB NOT NULL REFERENCES customers (id),
    ticket_id       BLOB,
    agent_id        TEXT,
    expected        REAL NOT NULL CHECK (expected > 0 AND expected <= 10),
    perceived       REAL NOT NULL CHECK (perceived >= 0 AND perceived <= 10),
    satisfaction    REAL NOT NULL,
    comment         TEXT NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL,
    idempotency_key TEXT UNIQUE
);

CREATE INDEX customer_satisfaction_customer_idx
    ON customer_satisfaction (customer_id, created_at DESC, id DESC);

CREATE TABLE customer_merges (
    id                    BLOB PRIMARY KEY NOT NULL,
    survivor_id           BLOB NOT NULL REFERENCES customers (id),
    merged_id             BLOB NOT NULL REFERENCES customers (id),
    reason                TEXT NOT NULL,
    identities_moved      INTEGER NOT NULL,
    interactions_moved    INTEGER NOT NULL,
    satisfaction_moved    INTEGER NOT NULL,
    -- The merged customer's lifetime value, added to the survivor's and taken back on undo.
    merged_value_micros   INTEGER NOT NULL,
    created_at            INTEGER NOT NULL,
    undone_at             INTEGER
);

-- Which rows each merge moved, so an undo moves back exactly those, even after later merges
-- into the same survivor were undone in between.
CREATE TABLE customer_merge_moves (
    merge_id BLOB NOT NULL REFERENCES customer_merges (id),
    kind     TEXT NOT NULL CHECK (kind IN ('identity', 'interaction', 'satisfaction')),
    row_id   BLOB NOT NULL,
    PRIMARY KEY (merge_id, kind, row_id)
) WITHOUT ROWID;
