-- Recordings reported on their own (POST /api/v1/calls/{id}/recording), and
-- after-call webhooks held for them.
--
-- `calls.recording_at`: when a recording was reported apart from the end
-- (null: none was, or it came with the end). The recording itself is the
-- call's `link` and `file_id`, wherever it came from.
alter table calls
    add column recording_at timestamptz;

-- A scenario's `recording_wait`: an after-call webhook whose call ended
-- without a recording is held up to this long for one (null: not held).
alter table scenarios
    add column recording_wait_secs integer
        check (recording_wait_secs between 0 and 1800);

-- Until when an after-call delivery is held for its recording (null: not
-- held). While it is also blocked behind its during-call delivery, the
-- release makes it due at this moment, not before; a recording that arrives
-- meanwhile clears it and makes the delivery due at once.
alter table deliveries
    add column recording_due_at timestamptz;
