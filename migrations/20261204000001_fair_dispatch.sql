-- Fair, priority-aware dispatch (docs/scheduling.md).
--
-- The unit of fairness is the endpoint: a scenario's during-call or after-call
-- URL, or the "no scenario" endpoint of operator events and of deliveries whose
-- scenario was deleted (scenario id 00000000-0000-0000-0000-000000000000 here).
-- Claims go round the endpoints that have due work (`endpoint_queue`), least
-- recently served first, taking from each at most what its in-flight cap and its
-- rate allow; within an endpoint, and between endpoints when seats are scarce,
-- a delivery's priority class decides.

-- An operator's requeue (bulk recover, "send again") is the lowest class.
alter table deliveries add column requeued boolean not null default false;

-- Priority class: 0 a fresh during-call webhook (and operator events), 1 a fresh
-- after-call webhook, 2 a retry, 3 an operator's requeue.
create function delivery_class(kind text, attempt_count integer, requeued boolean)
returns smallint language sql immutable parallel safe
return case when requeued then 3
            when attempt_count > 0 then 2
            when kind = 'after_call' then 1
            else 0 end;

-- How long a class lets higher ones go first: a delivery of class c due at t
-- ranks as if due at t + slack(c). Higher classes go first, but a lower one
-- waits at most its slack behind them however sustained their load: that is
-- what keeps it from starving.
create function delivery_class_slack(class smallint)
returns interval language sql immutable parallel safe
return case class when 0 then interval '0'
                  when 1 then interval '100 milliseconds'
                  when 2 then interval '1 second'
                  else interval '2 seconds' end;

-- A delivery's endpoint key.
create function delivery_endpoint(scenario_id uuid)
returns uuid language sql immutable parallel safe
return coalesce(scenario_id, '00000000-0000-0000-0000-000000000000'::uuid);

-- "An endpoint's due deliveries, best class first, oldest first": the claim's
-- walk, one short range per endpoint and class. It replaces the global due
-- index: nothing walks all due rows in due order any more.
create index deliveries_endpoint_due_idx on deliveries
    (delivery_endpoint(scenario_id), kind, delivery_class(kind, attempt_count, requeued), next_attempt_at)
    where state = 'pending';
drop index deliveries_due_idx;

-- "An endpoint's deliveries in flight" (claimed, lease running): only leased
-- rows are in it, so it stays the size of what is being sent.
create index deliveries_leased_idx on deliveries (delivery_endpoint(scenario_id), kind, next_attempt_at)
    where state = 'pending' and lease_token is not null;

-- Per-endpoint limits: `max_in_flight` (null: the dispatcher's default,
-- CALLHOOK_ENDPOINT_MAX_IN_FLIGHT) and `max_per_second` (null: none), set by an
-- operator; `cap`, the in-flight cap in force now, lowered when the receiver
-- answers 429/503 or times out and raised again by one per good batch (null: at
-- its maximum).
alter table endpoints
    add column max_in_flight  integer check (max_in_flight between 1 and 1000),
    add column max_per_second real    check (max_per_second > 0 and max_per_second <= 10000),
    add column cap            integer check (cap >= 1),
    add column cap_changed_at timestamptz;

-- The endpoints that have pending deliveries with a due time: the claim's
-- round. A row appears (a trigger, below) when such a delivery is written and
-- is kept right by the claims: `due_at` and `head_class` may be early or
-- optimistic (a claim that finds nothing due corrects them, or deletes the row
-- when nothing is pending), never late.
create table endpoint_queue (
    scenario_id uuid        not null,
    kind        text        not null,
    -- the earliest due time among its pending deliveries (or its rate's next slot)
    due_at      timestamptz not null,
    -- the best priority class among them
    head_class  smallint    not null,
    -- when it last had a turn in a claim: least recently served goes first; a
    -- newcomer ranks as served a second ago, ahead of the busy endpoints
    turn_at     timestamptz not null default now() - interval '1 second',
    -- max_per_second's schedule: when its next webhook may go
    rate_at     timestamptz,
    primary key (scenario_id, kind)
);

-- Every write that leaves a delivery pending with a due time puts its endpoint
-- in the round (one statement per write, whatever its rows). Claims maintain the
-- round themselves and skip this (`callhook.claiming`).
create function deliveries_enqueue_endpoints() returns trigger language plpgsql as $$
begin
    if current_setting('callhook.claiming', true) = 'on' then
        return null;
    end if;
    insert into endpoint_queue as q (scenario_id, kind, due_at, head_class)
    select delivery_endpoint(n.scenario_id), n.kind, min(n.next_attempt_at),
           min(delivery_class(n.kind, n.attempt_count, n.requeued))
      from new_rows n
     where n.state = 'pending' and n.next_attempt_at is not null
     group by 1, 2
     order by 1, 2
    on conflict (scenario_id, kind) do update
       set due_at = least(q.due_at, excluded.due_at),
           head_class = least(q.head_class, excluded.head_class);
    return null;
end $$;

create trigger deliveries_enqueue_on_insert after insert on deliveries
    referencing new table as new_rows for each statement
    execute function deliveries_enqueue_endpoints();
create trigger deliveries_enqueue_on_update after update on deliveries
    referencing new table as new_rows for each statement
    execute function deliveries_enqueue_endpoints();

-- What is pending and due now goes in the round at once.
insert into endpoint_queue (scenario_id, kind, due_at, head_class)
select delivery_endpoint(scenario_id), kind, min(next_attempt_at),
       min(delivery_class(kind, attempt_count, requeued))
  from deliveries
 where state = 'pending' and next_attempt_at is not null
 group by 1, 2;

-- Operators see each endpoint's share of the queue: due now, in flight, and
-- the limits in force (null cap: the dispatcher's default, or max_in_flight).
create or replace view endpoint_health as
select e.scenario_id,
       s.name                 as scenario_name,
       e.kind,
       case e.kind when 'during_call' then s.during_call_url else s.after_call_url end as url,
       e.state,
       e.since,
       e.last_success_at,
       e.last_error,
       e.consecutive_failures,
       (select count(*) from deliveries d
         where d.scenario_id = e.scenario_id and d.kind = e.kind and d.state = 'pending')
                              as deliveries_waiting,
       (select count(*) from deliveries d
         where delivery_endpoint(d.scenario_id) = e.scenario_id and d.kind = e.kind
           and d.state = 'pending' and d.next_attempt_at <= now())
                              as deliveries_due,
       (select count(*) from deliveries d
         where delivery_endpoint(d.scenario_id) = e.scenario_id and d.kind = e.kind
           and d.state = 'pending' and d.lease_token is not null and d.next_attempt_at > now())
                              as deliveries_in_flight,
       e.max_in_flight,
       coalesce(e.cap, e.max_in_flight) as cap,
       e.max_per_second
  from endpoints e
  join scenarios s on s.id = e.scenario_id;

comment on view endpoint_health is
    'One row per endpoint (a scenario''s during-call or after-call URL): healthy, failing, paused or disabled; how many deliveries wait, are due and are in flight; its limits (cap null: the dispatcher''s CALLHOOK_ENDPOINT_MAX_IN_FLIGHT). Read-only.';
