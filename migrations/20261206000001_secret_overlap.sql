-- The secret-overlap rule, in one place: after a rotation the previous
-- signing secret keeps signing webhooks (beside the new one) until its
-- overlap runs out. Every statement that reads a scenario's secrets for
-- sending (the claim, a probe, ingest's hand-off) or shows the overlap asks
-- this function. A one-expression SQL function: the planner inlines it.
create function overlap_running(expires_at timestamptz) returns boolean
    language sql stable parallel safe
    return expires_at > now();
