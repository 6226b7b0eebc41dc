//! The call page's timeline, in both languages: one catalogue per language
//! (a label missing in one does not compile).

/// What the timeline says of a call's moments and holds.
pub(crate) struct TimelineLabels {
    pub(crate) heading: &'static str,
    pub(crate) started: &'static str,
    pub(crate) stored_from_end: &'static str,
    pub(crate) ended: &'static str,
    pub(crate) recording: &'static str,
    pub(crate) recording_joined: &'static str,
    pub(crate) recording_late: &'static str,
    pub(crate) created: &'static str,
    pub(crate) attempt: &'static str,
    pub(crate) delivered: &'static str,
    pub(crate) not_sent: &'static str,
    pub(crate) waits_for_during_call: &'static str,
    pub(crate) waited_for_during_call: &'static str,
    pub(crate) held_for_recording: &'static str,
    pub(crate) expires: &'static str,
    pub(crate) parked: &'static str,
    pub(crate) resend_with_recording: &'static str,
}

pub(super) const EN: TimelineLabels = TimelineLabels {
    heading: "Timeline",
    started: "Call started",
    stored_from_end: "Call stored from its end (its start time estimated)",
    ended: "Call ended",
    recording: "Recording reported",
    recording_joined: "put into the after-call webhook, which had not gone",
    recording_late: "came after the after-call webhook went: send it again with the recording",
    created: "created",
    attempt: "attempt",
    delivered: "delivered",
    not_sent: "not sent",
    waits_for_during_call: "waits for its during-call webhook to be final",
    waited_for_during_call: "waited for its during-call webhook until it was final",
    held_for_recording: "held for the call's recording until",
    expires: "the call has ended: cancelled (call_ended) if not delivered by",
    parked: "waits for its paused or disabled endpoint",
    resend_with_recording: "Send again with the recording",
};

pub(super) const RU: TimelineLabels = TimelineLabels {
    heading: "Хронология",
    started: "Звонок начался",
    stored_from_end: "Звонок записан по его концу (время начала оценено)",
    ended: "Звонок завершён",
    recording: "Сообщена запись",
    recording_joined: "добавлена в вебхук «после звонка», который ещё не ушёл",
    recording_late: "пришла после ухода вебхука «после звонка»: отправьте его снова с записью",
    created: "создан",
    attempt: "попытка",
    delivered: "доставлен",
    not_sent: "не отправлен",
    waits_for_during_call: "ждёт, пока вебхук «во время звонка» станет окончательным",
    waited_for_during_call: "ждал, пока вебхук «во время звонка» станет окончательным",
    held_for_recording: "ждёт запись звонка до",
    expires: "звонок завершён: будет отменён (call_ended), если не доставлен до",
    parked: "ждёт свой приостановленный или отключённый адрес",
    resend_with_recording: "Отправить снова с записью",
};
