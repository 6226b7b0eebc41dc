-- What an endpoint has in flight (its pending deliveries that are leased, lease
-- not run out) was written out in five places: the claim's room, the
-- `endpoint_health` view, the one-argument `lock_during_call_room`, and twice
-- in the two-argument one. It is now one function, and those places call it.
--
-- A set-returning SQL function, stable, not strict, with no SET clause: the
-- planner inlines it as a subquery (inline_set_returning_function), so a
-- caller's count still reads only the leased range of `deliveries_queue_idx`
-- (an endpoint, a kind, `lease_token is not null` true), as the five copies did.
create function endpoint_in_flight(endpoint uuid, endpoint_kind text)
returns table (in_flight bigint)
language sql stable as $$
    select count(*)
      from deliveries d
     where delivery_endpoint(d.scenario_id) = endpoint and d.kind = endpoint_kind
       and d.state = 'pending' and d.lease_token is not null
       and d.next_attempt_at > now()
$$;

comment on function endpoint_in_flight(uuid, text) is
    'The deliveries an endpoint (a scenario, a kind) has in flight: pending, leased, the lease not run out. The one definition the claim, the hand-off and endpoint_health count by.';

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
       (select f.in_flight from endpoint_in_flight(e.scenario_id, e.kind) f)
                              as deliveries_in_flight,
       e.max_in_flight,
       coalesce(e.cap, e.max_in_flight) as cap,
       e.max_per_second
  from endpoints e
  join scenarios s on s.id = e.scenario_id;

-- Kept for a process of an earlier release during an upgrade
-- (20261207000022_handoff_room_unlocked_when_full.sql).
create or replace function lock_during_call_room(scenario_ids uuid[])
returns table (scenario_id uuid, in_flight bigint)
language plpgsql volatile as $$
declare
    k bigint;
begin
    for k in select distinct hashtextextended('callhook:handoff:' || t.sid::text, 0)
               from unnest(scenario_ids) as t(sid) order by 1 loop
        perform pg_advisory_xact_lock(k);
    end loop;
    return query
    select t.sid, (select f.in_flight from endpoint_in_flight(t.sid, 'during_call') f)
      from unnest(scenario_ids) as t(sid);
end $$;

-- As 20261207000022, counting by `endpoint_in_flight`. Its two statements take
-- arrays, whose lengths a custom plan would know: Postgres then planned them
-- again on every call, a tenth of a `burst`'s Postgres time. Their generic
-- plans (an index scan of the leased range per endpoint) are the right ones
-- for any length.
create or replace function lock_during_call_room(scenario_ids uuid[], caps integer[])
returns table (scenario_id uuid, in_flight bigint)
language plpgsql volatile
set plan_cache_mode = force_generic_plan as $$
declare
    k bigint;
    counted bigint[];
begin
    -- without the lock
    select array_agg((select f.in_flight from endpoint_in_flight(t.sid, 'during_call') f)
                     order by t.i)
      into counted
      from unnest(scenario_ids) with ordinality as t(sid, i);
    for k in select distinct hashtextextended('callhook:handoff:' || t.sid::text, 0)
               from unnest(scenario_ids, caps, counted) as t(sid, cap, n)
              where t.n < t.cap
              order by 1 loop
        perform pg_advisory_xact_lock(k);
    end loop;
    -- again, under the lock, for those with room (a new snapshot: this
    -- function is volatile, so the count sees every lease committed before
    -- the lock was granted)
    return query
    select t.sid,
           case when t.n >= t.cap then t.n
                else (select f.in_flight from endpoint_in_flight(t.sid, 'during_call') f)
           end
      from unnest(scenario_ids, caps, counted) as t(sid, cap, n);
end $$;
