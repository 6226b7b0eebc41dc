//! The catalogue's shape: one field per label, so a language's `const`
//! that misses a label does not compile, and typed look-ups for what the
//! console shows by value (kinds, states, actions, form fields), each an
//! exhaustive `match`: a new variant does not compile until it is labelled.
//! The look-ups take their value or a reference to it (`Borrow`), as
//! templates pass them.

use std::borrow::Borrow;

use callhook_core::filter::Op;
use callhook_core::{DeliveryKind, DeliveryState, EndpointKind, EndpointState};

use super::errors::FieldName;
use crate::console::deliveries::WaitingFor;
use crate::console::overview::NumberState;
use crate::console::scenario_form::ScenarioField;
use crate::ops::endpoints::EndpointAction;

/// Every label of the console in one language ([`super::Lang::labels`]).
#[derive(Debug)]
pub(crate) struct Labels {
    pub(crate) title: &'static str,
    pub(crate) login: &'static str,
    pub(crate) token: &'static str,
    pub(crate) sign_in: &'static str,
    pub(crate) logout: &'static str,
    pub(crate) wrong_token: &'static str,
    pub(crate) scenarios: &'static str,
    pub(crate) health: &'static str,
    pub(crate) name: &'static str,
    pub(crate) add: &'static str,
    pub(crate) numbers: &'static str,
    pub(crate) during_call: &'static str,
    pub(crate) after_call: &'static str,
    pub(crate) delivered_24h: &'static str,
    pub(crate) failed_24h: &'static str,
    pub(crate) last_error: &'static str,
    pub(crate) no_scenarios: &'static str,
    pub(crate) state: &'static str,
    pub(crate) since: &'static str,
    pub(crate) url: &'static str,
    pub(crate) waiting: &'static str,
    pub(crate) due: &'static str,
    pub(crate) in_flight: &'static str,
    pub(crate) limits: &'static str,
    pub(crate) pause: &'static str,
    pub(crate) enable: &'static str,
    pub(crate) off: &'static str,
    pub(crate) healthy: &'static str,
    pub(crate) failing: &'static str,
    pub(crate) failed: &'static str,
    pub(crate) paused: &'static str,
    pub(crate) disabled: &'static str,
    pub(crate) language: &'static str,
    pub(crate) deliveries: &'static str,
    pub(crate) call_id: &'static str,
    pub(crate) call: &'static str,
    pub(crate) kind: &'static str,
    pub(crate) created: &'static str,
    pub(crate) attempts: &'static str,
    pub(crate) filter: &'static str,
    pub(crate) older: &'static str,
    pub(crate) pending: &'static str,
    pub(crate) delivered: &'static str,
    pub(crate) cancelled: &'static str,
    pub(crate) operator_event: &'static str,
    pub(crate) next_attempt: &'static str,
    pub(crate) status: &'static str,
    pub(crate) response: &'static str,
    pub(crate) resend: &'static str,
    pub(crate) copy_curl: &'static str,
    pub(crate) new_scenario: &'static str,
    pub(crate) pool: &'static str,
    pub(crate) test_send: &'static str,
    pub(crate) placeholders: &'static str,
    pub(crate) before_recovery: &'static str,
    pub(crate) health_legend: &'static str,
    pub(crate) saved: &'static str,
    pub(crate) recover_counts: &'static str,
    pub(crate) next_or_waiting: &'static str,
    pub(crate) waiting_for_during: &'static str,
    pub(crate) waiting_for_endpoint: &'static str,
    pub(crate) form_errors: &'static str,
    pub(crate) custom_fields_json: &'static str,
    pub(crate) recover: &'static str,
    pub(crate) scenario: &'static str,
    pub(crate) will_resend: &'static str,
    pub(crate) confirm: &'static str,
    pub(crate) count_first: &'static str,
    pub(crate) requeued: &'static str,
    pub(crate) pool_size: &'static str,
    pub(crate) reserved_now: &'static str,
    pub(crate) free_now: &'static str,
    pub(crate) shared_today: &'static str,
    pub(crate) number: &'static str,
    pub(crate) visit: &'static str,
    pub(crate) until: &'static str,
    pub(crate) reserved: &'static str,
    pub(crate) free: &'static str,
    pub(crate) static_number: &'static str,
    pub(crate) during_call_url: &'static str,
    pub(crate) after_call_url: &'static str,
    pub(crate) custom_fields: &'static str,
    pub(crate) during_call_filter: &'static str,
    pub(crate) after_call_filter: &'static str,
    pub(crate) during_call_headers: &'static str,
    pub(crate) after_call_headers: &'static str,
    pub(crate) during_call_grace: &'static str,
    pub(crate) recording_wait: &'static str,
    pub(crate) static_numbers: &'static str,
    pub(crate) timezone: &'static str,
    pub(crate) save: &'static str,
    pub(crate) preview: &'static str,
    pub(crate) signing_secret: &'static str,
    pub(crate) reveal: &'static str,
    pub(crate) rotate: &'static str,
    pub(crate) delete: &'static str,
    pub(crate) confirm_delete: &'static str,
    pub(crate) any: &'static str,
    pub(crate) zone_note: &'static str,
    pub(crate) live: &'static str,
    pub(crate) more_new: &'static str,
    pub(crate) started: &'static str,
    pub(crate) call_fields: &'static str,
    pub(crate) signed_request: &'static str,
    pub(crate) scenario_zone: &'static str,
    pub(crate) field: &'static str,
    pub(crate) max_in_flight: &'static str,
    pub(crate) max_per_second: &'static str,
    pub(crate) set_limits: &'static str,
    pub(crate) send_now: &'static str,
    pub(crate) send_now_hint: &'static str,
    pub(crate) error: &'static str,
    pub(crate) no_answer: &'static str,
    pub(crate) custom_fields_short: &'static str,
    pub(crate) static_numbers_short: &'static str,
    pub(crate) item: &'static str,
    pub(crate) every_call: &'static str,
    pub(crate) no_headers: &'static str,
    pub(crate) add_condition: &'static str,
    pub(crate) add_header: &'static str,
    pub(crate) remove_row: &'static str,
    pub(crate) condition_field: &'static str,
    pub(crate) operator: &'static str,
    pub(crate) value: &'static str,
    pub(crate) value_hint: &'static str,
    pub(crate) header_name: &'static str,
    pub(crate) secret: &'static str,
    pub(crate) secret_set: &'static str,
    pub(crate) conditions_json: &'static str,
    pub(crate) dry_run: &'static str,
    pub(crate) dry_run_calls: &'static str,
    pub(crate) dry_run_ended: &'static str,
    pub(crate) dry_run_new: &'static str,
    pub(crate) try_conditions: &'static str,
    pub(crate) would_send: &'static str,
    pub(crate) would_filter: &'static str,
    pub(crate) op_eq: &'static str,
    pub(crate) op_ne: &'static str,
    pub(crate) op_in: &'static str,
    pub(crate) op_not_in: &'static str,
    pub(crate) op_prefix: &'static str,
    pub(crate) op_gte: &'static str,
    pub(crate) op_lte: &'static str,
    pub(crate) op_present: &'static str,
    pub(crate) op_absent: &'static str,
}

impl Labels {
    /// A delivery's kind.
    pub(crate) fn delivery_kind(&self, kind: impl Borrow<DeliveryKind>) -> &'static str {
        match *kind.borrow() {
            DeliveryKind::DuringCall => self.during_call,
            DeliveryKind::AfterCall => self.after_call,
            DeliveryKind::OperatorEvent => self.operator_event,
        }
    }

    /// An endpoint's kind (a scenario's during-call or after-call URL).
    pub(crate) fn endpoint_kind(&self, kind: impl Borrow<EndpointKind>) -> &'static str {
        self.delivery_kind(DeliveryKind::from(*kind.borrow()))
    }

    /// Where a delivery stands.
    pub(crate) fn delivery_state(&self, state: impl Borrow<DeliveryState>) -> &'static str {
        match *state.borrow() {
            DeliveryState::Pending => self.pending,
            DeliveryState::Delivered => self.delivered,
            DeliveryState::Failed => self.failed,
            DeliveryState::Cancelled => self.cancelled,
        }
    }

    /// Where an endpoint stands.
    pub(crate) fn endpoint_state(&self, state: impl Borrow<EndpointState>) -> &'static str {
        match *state.borrow() {
            EndpointState::Healthy => self.healthy,
            EndpointState::Failing => self.failing,
            EndpointState::Paused => self.paused,
            EndpointState::Disabled => self.disabled,
        }
    }

    /// The button that pauses or enables an endpoint.
    pub(crate) fn endpoint_action(&self, action: impl Borrow<EndpointAction>) -> &'static str {
        match *action.borrow() {
            EndpointAction::Pause => self.pause,
            EndpointAction::Enable => self.enable,
        }
    }

    /// What a pending delivery waits for.
    pub(crate) fn waiting_for(&self, w: impl Borrow<WaitingFor>) -> &'static str {
        match *w.borrow() {
            WaitingFor::DuringCall => self.waiting_for_during,
            WaitingFor::Endpoint => self.waiting_for_endpoint,
        }
    }

    /// A pool number's state.
    pub(crate) fn number_state(&self, state: impl Borrow<NumberState>) -> &'static str {
        match *state.borrow() {
            NumberState::Reserved => self.reserved,
            NumberState::Free => self.free,
            NumberState::Static => self.static_number,
        }
    }

    /// A scenario form field's label, as the form shows it.
    pub(crate) fn scenario_field(&self, field: impl Borrow<ScenarioField>) -> &'static str {
        match *field.borrow() {
            ScenarioField::Name => self.name,
            ScenarioField::DuringCallUrl => self.during_call_url,
            ScenarioField::AfterCallUrl => self.after_call_url,
            ScenarioField::CustomFields => self.custom_fields,
            ScenarioField::DuringCallFilter => self.during_call_filter,
            ScenarioField::AfterCallFilter => self.after_call_filter,
            ScenarioField::DuringCallHeaders => self.during_call_headers,
            ScenarioField::AfterCallHeaders => self.after_call_headers,
            ScenarioField::DuringCallGrace => self.during_call_grace,
            ScenarioField::RecordingWait => self.recording_wait,
            ScenarioField::Numbers => self.numbers,
            ScenarioField::StaticNumbers => self.static_numbers,
            ScenarioField::Timezone => self.timezone,
        }
    }

    /// A condition's operator, as its picker shows it.
    pub(crate) fn op(&self, op: impl Borrow<Op>) -> &'static str {
        match *op.borrow() {
            Op::Eq => self.op_eq,
            Op::Ne => self.op_ne,
            Op::In => self.op_in,
            Op::NotIn => self.op_not_in,
            Op::Prefix => self.op_prefix,
            Op::Gte => self.op_gte,
            Op::Lte => self.op_lte,
            Op::Present => self.op_present,
            Op::Absent => self.op_absent,
        }
    }

    /// An input's short name, as an error message names it.
    pub(crate) fn field_name(&self, field: FieldName) -> &'static str {
        match field {
            FieldName::Scenario(ScenarioField::CustomFields) => self.custom_fields_short,
            FieldName::Scenario(ScenarioField::StaticNumbers) => self.static_numbers_short,
            FieldName::Scenario(f) => self.scenario_field(f),
            FieldName::ScenarioId => self.scenario,
            FieldName::CallId => self.call_id,
            FieldName::State => self.state,
            FieldName::Kind => self.kind,
            FieldName::Since => self.since,
            FieldName::Until => self.until,
            FieldName::MaxInFlight => self.max_in_flight,
            FieldName::MaxPerSecond => self.max_per_second,
            FieldName::Url => self.url,
            FieldName::SigningSecret => self.signing_secret,
        }
    }
}
