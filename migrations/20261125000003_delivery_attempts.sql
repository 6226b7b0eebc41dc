-- One row per HTTP attempt, for operators: what was sent where, when, how it
-- went. `error` is null when a response came back; otherwise what failed
-- (timeout, connect, dns, tls, blocked_destination, ...).
create table delivery_attempts (
    id              bigint generated always as identity primary key,
    delivery_id     uuid        not null references deliveries (id) on delete cascade,
    attempt         integer     not null,
    url             text        not null,
    started_at      timestamptz not null,
    duration_ms     integer     not null,
    response_status integer,
    -- the first 4 KiB, as UTF-8 text with invalid bytes and NULs replaced
    response_body   text,
    error           text,
    constraint delivery_attempts_delivery_attempt_key unique (delivery_id, attempt)
);

-- Time-based reads (the slowest receivers today, retention).
create index delivery_attempts_started_at_idx on delivery_attempts (started_at);
