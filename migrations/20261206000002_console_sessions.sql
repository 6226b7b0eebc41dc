-- Console sessions signed out: a session's cookie is signed and carries no
-- server state, so signing out must be remembered here, where every API
-- process checks it. A row can go once the session's absolute lifetime is
-- over (`forget_after`): its cookie is refused anyway by then.
create table console_signed_out (
    sid          text        primary key,
    at           timestamptz not null default now(),
    forget_after timestamptz not null
);
