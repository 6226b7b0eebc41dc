-- Call events in any order (crossed starts and ends, late starts).

-- An after-call delivery waits for its call's during-call delivery to be
-- final: it names that delivery in blocked_by and has no due time, so claims
-- never walk it (it is outside the due range of deliveries_due_idx). Whoever
-- makes the during-call delivery final (its completion, a cancellation)
-- clears blocked_by and makes the after-call delivery due, in the same
-- transaction.
alter table deliveries
    add column blocked_by uuid references deliveries (id),
    drop constraint deliveries_pending_has_due,
    add constraint deliveries_pending_has_due
        check (state <> 'pending' or next_attempt_at is not null or blocked_by is not null),
    add constraint deliveries_blocked_is_pending
        check (blocked_by is null or state = 'pending');

-- "Which after-call deliveries wait for these during-call ones": only
-- blocked rows are in it.
create index deliveries_blocked_by_idx on deliveries (blocked_by) where blocked_by is not null;

-- After-call deliveries already waiting the old way (a claim checked the
-- call's during-call delivery each time) now wait the new way.
update deliveries a
   set blocked_by = d.id, next_attempt_at = null
  from deliveries d
 where a.kind = 'after_call' and a.state = 'pending' and a.lease_token is null
   and d.call_id = a.call_id and d.kind = 'during_call' and d.state = 'pending';

-- A call stored from an end event alone (no start yet) has a start time
-- the end event gave (`date`) or, without one, its end time less its
-- duration: an estimate that a late start's own `date` replaces. A late
-- start whose date differs from a given one is a conflict.
alter table calls add column started_at_estimated boolean not null default false;
