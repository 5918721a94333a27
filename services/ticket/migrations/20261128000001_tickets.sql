-- The ticket service's tables. Only this service reads or writes them.

CREATE TABLE tickets (
    id                      uuid PRIMARY KEY,
    -- Eight digits, shown as T-4821-7730; random, so numbers leak no volumes.
    number                  text NOT NULL UNIQUE CHECK (number ~ '^[0-9]{8}$'),
    idempotency_key         text NOT NULL UNIQUE,
    -- Fingerprint of the creating request: the same key with another request is refused.
    request_fingerprint     bytea NOT NULL,

    customer_id             uuid,
    customer_resolution     text NOT NULL CHECK (customer_resolution IN ('resolved', 'pending')),
    caller_kind             text,
    caller_value            text,
    caller_region           text,
    snapshot_tier           text CHECK (snapshot_tier IN ('A', 'B', 'C')),
    snapshot_key_account    boolean NOT NULL DEFAULT false,
    snapshot_account_manager text,
    snapshot_display_name   text,
    snapshot_at             timestamptz,

    channel                 text NOT NULL,
    type                    text NOT NULL,
    category                text NOT NULL,
    department              text NOT NULL,
    severity                text NOT NULL,
    priority                integer NOT NULL,
    subject                 text NOT NULL,
    description             text NOT NULL DEFAULT '',
    language_code           text NOT NULL DEFAULT '',
    customer_emotion        text,
    desired_outcome         text NOT NULL DEFAULT '',
    compensation            jsonb,
    root_cause              text,
    triage_label            text,
    resolution_summary      text NOT NULL DEFAULT '',
    tags                    text[] NOT NULL DEFAULT '{}',
    attributes              jsonb NOT NULL DEFAULT '{}',
    -- Effective skills (category + language + own) for routing, and the ticket's own.
    required_skills         text[] NOT NULL DEFAULT '{}',
    own_skills              text[] NOT NULL DEFAULT '{}',

    state                   text NOT NULL,
    state_reason            text NOT NULL DEFAULT '',
    hold_reason             text,
    cancel_reason           text,
    assigned_agent_id       text,
    handler_agent_ids       text[] NOT NULL DEFAULT '{}',
    enqueue_at              timestamptz NOT NULL,
    pickup_due_at           timestamptz NOT NULL,
    preferred_agent_id      text,
    reservation_id          uuid,
    merged_into             uuid REFERENCES tickets (id),

    -- The SLA clock (see domain/sla.rs), stored so the breach monitor needs no recomputation.
    sla                     jsonb NOT NULL,
    sla_status              text NOT NULL,
    -- Next instant something happens to the ticket by itself (an SLA status change, the
    -- follow-up falling due, an automatic close); the timer worker's index.
    timer_at                timestamptz,

    follow_up               jsonb,
    follow_up_due_at        timestamptz,
    follow_up_due_raised    boolean NOT NULL DEFAULT false,
    auto_close_at           timestamptz,

    version                 bigint NOT NULL DEFAULT 1,
    created_at              timestamptz NOT NULL,
    updated_at              timestamptz NOT NULL,
    resolved_at             timestamptz,
    closed_at               timestamptz
);

-- ListTickets pages by (created_at, id) within each filter. At ten million tickets the common
-- filters each get an index; live states are a small share, so partial indexes keep them small.
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
    id              uuid PRIMARY KEY,
    ticket_id       uuid NOT NULL REFERENCES tickets (id),
    visibility      text NOT NULL CHECK (visibility IN ('public', 'internal')),
    author_kind     text NOT NULL,
    author_id       text NOT NULL DEFAULT '',
    body            text NOT NULL,
    channel         text NOT NULL,
    first_response  boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL,
    idempotency_key text UNIQUE,
    request_fingerprint bytea
);

CREATE INDEX ticket_comments_ticket_idx ON ticket_comments (ticket_id, created_at, id);

CREATE TABLE ticket_links (
    ticket_id        uuid NOT NULL REFERENCES tickets (id),
    linked_ticket_id uuid NOT NULL REFERENCES tickets (id),
    kind             text NOT NULL,
    created_at       timestamptz NOT NULL,
    PRIMARY KEY (ticket_id, linked_ticket_id)
);

-- Every change to every ticket, append-only: the history (kept for the ticket's life) and the
-- transactional outbox (WatchTicketEvents and the relays read it by `sequence`).
CREATE TABLE ticket_events (
    sequence          bigserial PRIMARY KEY,
    event_id          uuid NOT NULL UNIQUE,
    -- The writing transaction: readers only take events of transactions older than every running
    -- one, so a later-committing transaction can never slip in behind a delivered cursor.
    xid               xid8 NOT NULL DEFAULT pg_current_xact_id(),
    ticket_id         uuid NOT NULL REFERENCES tickets (id),
    ticket_version    bigint NOT NULL,
    kind              text NOT NULL,
    actor_kind        text NOT NULL,
    actor_id          text NOT NULL DEFAULT '',
    from_state        text NOT NULL,
    to_state          text NOT NULL,
    reason            text NOT NULL DEFAULT '',
    changed_fields    text[] NOT NULL DEFAULT '{}',
    comment_id        uuid,
    related_ticket_id uuid,
    event_at          timestamptz NOT NULL,
    -- The ticket after the change, protobuf-encoded; cleared after the retention period.
    snapshot          bytea
);

CREATE INDEX ticket_events_ticket_idx ON ticket_events (ticket_id, sequence);
-- The retained part of the log: where a stream may start, and what the pruner clears next.
CREATE INDEX ticket_events_retained_idx ON ticket_events (sequence) WHERE snapshot IS NOT NULL;
CREATE INDEX ticket_events_retained_at_idx ON ticket_events (event_at) WHERE snapshot IS NOT NULL;

-- How far each relay (routing, customer timeline) has delivered. A relay holds its row locked
-- while it works, so one replica at a time delivers for it.
CREATE TABLE relay_cursors (
    name     text PRIMARY KEY,
    sequence bigint NOT NULL DEFAULT 0
);

-- Each SLA target's outcome, recorded once.
CREATE TABLE ticket_sla_outcomes (
    ticket_id   uuid NOT NULL REFERENCES tickets (id),
    target      text NOT NULL CHECK (target IN ('first_response', 'resolution')),
    outcome     text NOT NULL CHECK (outcome IN ('met', 'breached')),
    due_at      timestamptz NOT NULL,
    achieved_at timestamptz,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ticket_id, target)
);
