-- The hand-off's room (20261207000010_handoff_room.sql) took each endpoint's
-- lock before counting, and held it to the commit, even when the endpoint was
-- at its cap already and the group could lease nothing for it. A flood to a
-- receiver at its cap (a slow one, or one whose cap the congestion signals
-- lowered) then made every start group carrying one of its calls wait for the
-- groups ahead of it, for nothing; and since a group carries the calls of
-- every scenario that arrived together, their calls waited too.
--
-- Now each endpoint is counted first without the lock. One at or over its cap
-- gets no lease, whatever other groups do meanwhile (they can only add to its
-- count, and completions freeing room only mean a delivery goes through the
-- queue instead of the hand-off), so it needs no lock. The others are locked,
-- in key order as before, and counted again under the lock.
--
-- A new signature: a process of the earlier release, still running during an
-- upgrade, keeps calling the one-argument function, which stays.
create function lock_during_call_room(scenario_ids uuid[], caps integer[])
returns table (scenario_id uuid, in_flight bigint)
language plpgsql volatile as $$
declare
    k bigint;
    counted bigint[];
begin
    -- without the lock
    select array_agg((select count(*) from deliveries d
                       where delivery_endpoint(d.scenario_id) = t.sid and d.kind = 'during_call'
                         and d.state = 'pending' and d.lease_token is not null
                         and d.next_attempt_at > now())
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
                else (select count(*) from deliveries d
                       where delivery_endpoint(d.scenario_id) = t.sid and d.kind = 'during_call'
                         and d.state = 'pending' and d.lease_token is not null
                         and d.next_attempt_at > now())
           end
      from unnest(scenario_ids, caps, counted) as t(sid, cap, n);
end $$;
