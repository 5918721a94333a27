-- The customer-profile service's tables. Only this service reads or writes them.

CREATE TABLE customers (
    id                    uuid PRIMARY KEY,
    display_name          text NOT NULL,
    form_of_address       text NOT NULL DEFAULT '',
    kind                  text NOT NULL CHECK (kind IN ('individual', 'organization')),
    relationship          text NOT NULL CHECK (relationship IN ('direct', 'channel_partner', 'reseller')),
    segment               text NOT NULL DEFAULT '',
    postal_address        jsonb,
    significant_dates     jsonb NOT NULL DEFAULT '[]',
    preferences           text[] NOT NULL DEFAULT '{}',
    observations          text NOT NULL DEFAULT '',
    attributes            jsonb NOT NULL DEFAULT '{}',
    credit_standing       text NOT NULL CHECK (credit_standing IN ('unknown', 'good', 'watch', 'poor')),
    lifecycle_stage       text NOT NULL CHECK (lifecycle_stage IN ('prospect', 'new', 'active', 'loyal', 'churned')),
    churn_reason          text NOT NULL DEFAULT '',
    account_manager_id    text,
    key_account           boolean NOT NULL DEFAULT false,
    unreasonable          boolean NOT NULL DEFAULT false,
    unreasonable_note     text NOT NULL DEFAULT '',
    -- Millionths of the reporting currency.
    lifetime_value_micros bigint NOT NULL DEFAULT 0 CHECK (lifetime_value_micros >= 0),
    computed_tier         text NOT NULL DEFAULT 'C' CHECK (computed_tier IN ('A', 'B', 'C')),
    override_tier         text CHECK (override_tier IN ('A', 'B', 'C')),
    override_reason       text,
    override_set_at       timestamptz,
    -- The tier in force, kept by PostgreSQL so filters on it can use an index.
    tier                  text GENERATED ALWAYS AS (COALESCE(override_tier, computed_tier)) STORED,
    -- Running satisfaction sums; means are derived.
    sat_count             bigint NOT NULL DEFAULT 0,
    sat_sum_c             double precision NOT NULL DEFAULT 0,
    sat_sum_expected      double precision NOT NULL DEFAULT 0,
    sat_sum_perceived     double precision NOT NULL DEFAULT 0,
    sat_last_c            double precision,
    sat_last_at           timestamptz,
    merged_into           uuid REFERENCES customers (id),
    version               bigint NOT NULL DEFAULT 1,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    deleted_at            timestamptz,
    idempotency_key       text UNIQUE,
    CHECK ((override_tier IS NULL) = (override_reason IS NULL))
);

-- Lists page by id (UUIDv7, so creation order) within each filter. Live customers only; the
-- show_deleted listing is an admin's rare query.
CREATE INDEX customers_live_idx ON customers (id) WHERE deleted_at IS NULL AND merged_into IS NULL;
CREATE INDEX customers_tier_idx ON customers (tier, id) WHERE deleted_at IS NULL AND merged_into IS NULL;
CREATE INDEX customers_segment_idx ON customers (segment, id) WHERE deleted_at IS NULL AND merged_into IS NULL;
CREATE INDEX customers_stage_idx ON customers (lifecycle_stage, id) WHERE deleted_at IS NULL AND merged_into IS NULL;
CREATE INDEX customers_manager_idx ON customers (account_manager_id, id)
    WHERE account_manager_id IS NOT NULL AND deleted_at IS NULL AND merged_into IS NULL;
CREATE INDEX customers_key_account_idx ON customers (id)
    WHERE key_account AND deleted_at IS NULL AND merged_into IS NULL;
-- Tier recomputation sorts by value.
CREATE INDEX customers_value_idx ON customers (lifetime_value_micros DESC, id)
    WHERE deleted_at IS NULL AND merged_into IS NULL;

CREATE TABLE customer_identities (
    id          uuid PRIMARY KEY,
    customer_id uuid NOT NULL REFERENCES customers (id),
    kind        text NOT NULL CHECK (kind IN ('phone', 'email', 'external_id')),
    -- Normalised: E.164 for phones, lower case for emails.
    value       text NOT NULL,
    label       text NOT NULL DEFAULT '',
    shared      boolean NOT NULL DEFAULT false,
    -- Set while the customer is soft-deleted: the identity is free for others.
    released    boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (customer_id, kind, value)
);

-- One owner per identity unless shared; this is what makes ResolveCustomer race-free.
CREATE UNIQUE INDEX customer_identities_owner_idx ON customer_identities (kind, value)
    WHERE NOT shared AND NOT released;
-- The IVR's lookup.
CREATE INDEX customer_identities_lookup_idx ON customer_identities (kind, value) WHERE NOT released;
CREATE INDEX customer_identities_customer_idx ON customer_identities (customer_id);

CREATE TABLE customer_interactions (
    id              uuid PRIMARY KEY,
    customer_id     uuid NOT NULL REFERENCES customers (id),
    channel         text NOT NULL,
    direction       text NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    summary         text NOT NULL,
    promised        text NOT NULL DEFAULT '',
    given           text NOT NULL DEFAULT '',
    ticket_id       uuid,
    agent_id        text,
    occurred_at     timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    idempotency_key text UNIQUE
);

CREATE INDEX customer_interactions_timeline_idx
    ON customer_interactions (customer_id, occurred_at DESC, id DESC);

CREATE TABLE customer_satisfaction (
    id              uuid PRIMARY KEY,
    customer_id     uuid NOT NULL REFERENCES customers (id),
    ticket_id       uuid,
    agent_id        text,
    expected        double precision NOT NULL CHECK (expected > 0 AND expected <= 10),
    perceived       double precision NOT NULL CHECK (perceived >= 0 AND perceived <= 10),
    satisfaction    double precision NOT NULL,
    comment         text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    idempotency_key text UNIQUE
);

CREATE INDEX customer_satisfaction_customer_idx
    ON customer_satisfaction (customer_id, created_at DESC, id DESC);

CREATE TABLE customer_merges (
    id                    uuid PRIMARY KEY,
    survivor_id           uuid NOT NULL REFERENCES customers (id),
    merged_id             uuid NOT NULL REFERENCES customers (id),
    reason                text NOT NULL,
    identities_moved      bigint NOT NULL,
    interactions_moved    bigint NOT NULL,
    satisfaction_moved    bigint NOT NULL,
    -- The merged customer's lifetime value, added to the survivor's and taken back on undo.
    merged_value_micros   bigint NOT NULL,
    created_at            timestamptz NOT NULL DEFAULT now(),
    undone_at             timestamptz
);

-- Which rows each merge moved, so an undo moves back exactly those, even after later merges
-- into the same survivor were undone in between.
CREATE TABLE customer_merge_moves (
    merge_id uuid NOT NULL REFERENCES customer_merges (id),
    kind     text NOT NULL CHECK (kind IN ('identity', 'interaction', 'satisfaction')),
    row_id   uuid NOT NULL,
    PRIMARY KEY (merge_id, kind, row_id)
);

-- The live profile a customer id stands for: itself, or the survivor of the merges it went
-- through. Reads and timeline writes go through it, so a merged id keeps working.
CREATE FUNCTION customer_survivor(start uuid) RETURNS uuid
LANGUAGE sql STABLE AS $$
    WITH RECURSIVE chain (id, next, depth) AS (
        SELECT id, merged_into, 0 FROM customers WHERE id = start
        UNION ALL
        SELECT c.id, c.merged_into, chain.depth + 1
        FROM customers c JOIN chain ON c.id = chain.next
        WHERE chain.depth < 32
    )
    SELECT id FROM chain WHERE next IS NULL LIMIT 1
$$;
