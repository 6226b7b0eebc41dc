-- Headers per webhook: `[{"name", "value", "secret"}]` sent with every
-- attempt of that webhook (empty: none, as before). A secret value is stored
-- sealed like the signing secret (`enc:v2:…`, bound to its scenario and
-- header) when CALLHOOK_SECRET_KEY is set, and is never answered.
alter table scenarios
    add column during_call_headers jsonb not null default '[]',
    add column after_call_headers  jsonb not null default '[]';
