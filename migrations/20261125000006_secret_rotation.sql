-- Secret rotation: after `POST /api/v1/scenarios/{id}/secret/rotate` the old
-- secret keeps signing webhooks (next to the new one) until
-- previous_secret_expires_at, so receivers can switch keys without a gap.
alter table scenarios
    add column previous_signing_secret   text,
    add column previous_secret_expires_at timestamptz,
    add constraint scenarios_previous_secret_check
        check ((previous_signing_secret is null) = (previous_secret_expires_at is null));
