-- The hand-off lock's key (an endpoint's advisory lock, taken by a start group
-- that may lease its during-call deliveries at once) was written out in both
-- `lock_during_call_room` functions and, as a literal, in a test that holds
-- the lock to prove a group does not wait for it. It is one function now: the
-- lock functions and that test call it, so the key cannot drift from what the
-- test holds. An immutable SQL function: Postgres inlines it.
create function handoff_lock_key(endpoint uuid) returns bigint
language sql immutable parallel safe as $$
    select hashtextextended('callhook:handoff:' || endpoint::text, 0)
$$;

comment on function handoff_lock_key(uuid) is
    'The advisory lock a start group takes to lease an endpoint''s during-call deliveries at once (lock_during_call_room).';

-- As 20261207000023, by handoff_lock_key. Kept for a process of an earlier
-- release during an upgrade.
create or replace function lock_during_call_room(scenario_ids uuid[])
returns table (scenario_id uuid, in_flight bigint)
language plpgsql volatile as $$
declare
    k bigint;
begin
    for k in select distinct handoff_lock_key(t.sid)
               from unnest(scenario_ids) as t(sid) order by 1 loop
        perform pg_advisory_xact_lock(k);
    end loop;
    return query
    select t.sid, (select f.in_flight from endpoint_in_flight(t.sid, 'during_call') f)
      from unnest(scenario_ids) as t(sid);
end $$;

-- As 20261207000023, by handoff_lock_key.
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
    for k in select distinct handoff_lock_key(t.sid)
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
