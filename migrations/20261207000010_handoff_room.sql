-- The hand-off's room, taken under a lock. Ingest leases a start group's
-- during-call deliveries to its own dispatcher only within each endpoint's cap,
-- counted from what is leased and not yet recorded. Two groups counting at once
-- (two committers in a process, or two processes) each saw the other's leases
-- missing and together leased up to twice the cap: a slow receiver's rows then
-- filled every place a dispatcher has for unrecorded deliveries, and other
-- endpoints' webhooks waited for its answers (docs/performance.md, "The
-- hand-off's room, locked").
--
-- This locks each endpoint (a transaction-scoped advisory lock, in key order so
-- two groups never wait for each other in a cycle), then counts: a function
-- marked volatile takes a new snapshot for each statement in it, so the count
-- sees every lease committed before the lock was granted. The lock is held to
-- the group's commit; groups that lease for one endpoint take turns, groups for
-- other endpoints do not wait.
create function lock_during_call_room(scenario_ids uuid[])
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
    select t.sid, (select count(*) from deliveries d
                    where delivery_endpoint(d.scenario_id) = t.sid and d.kind = 'during_call'
                      and d.state = 'pending' and d.lease_token is not null
                      and d.next_attempt_at > now())
      from unnest(scenario_ids) as t(sid);
end $$;
