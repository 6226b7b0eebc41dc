//! The scenario store: settings, tracking numbers, signing secret.

use callhook_core::{
    CancelReason, Condition, CustomField, CustomFields, DeliveryKind, Filter, Header, PhoneNumber,
    StoredSecret, Timezone, Transition, WebhookUrl,
};
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use crate::health::{self, HealthSettings};
use crate::queue;
use crate::StoreError;

mod numbers;
mod secrets;
use numbers::set_numbers;
pub use secrets::{lock_secrets, rotate_secret, set_secrets, StoredSecrets};

/// A scenario as stored.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub id: Uuid,
    pub name: String,
    pub during_call_url: Option<String>,
    pub after_call_url: Option<String>,
    pub custom_fields: Json<Vec<CustomField>>,
    /// Conditions the call must meet for each webhook (empty: every call).
    pub during_call_filter: Json<Vec<Condition>>,
    pub after_call_filter: Json<Vec<Condition>>,
    /// Headers each webhook carries, secret values in their stored form.
    pub during_call_headers: Json<Vec<Header>>,
    pub after_call_headers: Json<Vec<Header>>,
    /// Its own grace for a during-call webhook after its call's end, in
    /// seconds (none: `CALLHOOK_DURING_CALL_GRACE`).
    pub during_call_grace_secs: Option<i32>,
    /// How long an after-call webhook whose call ended without a recording
    /// waits for one, in seconds (none: it does not wait).
    pub recording_wait_secs: Option<i32>,
    pub timezone: String,
    pub signing_secret: StoredSecret,
    /// Until then, webhooks are also signed with the secret before the last
    /// rotation (null: no rotation overlap running).
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    /// The pool's numbers (static ones are in `static_numbers`).
    pub numbers: Vec<String>,
    pub static_numbers: Json<Vec<StaticNumber>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A number never reserved for visits: calls to it carry these fixed fields
/// (offline ads).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StaticNumber {
    /// Digits only.
    pub number: String,
    pub marker: Option<String>,
    pub source_level_1: Option<String>,
    pub source_level_2: Option<String>,
}

impl Scenario {
    /// The zone as a type; an error names the scenario when the stored zone
    /// was damaged (saves only ever store parsed zones).
    pub fn tz(&self) -> Result<Timezone, StoreError> {
        Timezone::parse(&self.timezone, "timezone").map_err(|_| {
            StoreError::Corrupt(format!(
                "scenario {} has an invalid stored timezone {:?}: save the scenario with a valid IANA zone",
                self.id, self.timezone
            ))
        })
    }

    pub fn fields(&self) -> CustomFields {
        CustomFields::from_trusted(self.custom_fields.0.clone())
    }

    /// The headers of the webhook of `kind`, secret values stored sealed.
    pub fn headers(&self, kind: callhook_core::EndpointKind) -> &[Header] {
        match kind {
            callhook_core::EndpointKind::DuringCall => &self.during_call_headers.0,
            callhook_core::EndpointKind::AfterCall => &self.after_call_headers.0,
        }
    }

    pub fn url_for(&self, kind: DeliveryKind) -> Option<&str> {
        match kind {
            DeliveryKind::DuringCall => self.during_call_url.as_deref(),
            DeliveryKind::AfterCall => self.after_call_url.as_deref(),
            DeliveryKind::OperatorEvent => None,
        }
    }
}

/// Everything an operator sets on a scenario, checked. A save replaces it whole.
#[derive(Debug, Clone)]
pub struct ScenarioSettings {
    pub name: String,
    pub during_call_url: Option<WebhookUrl>,
    pub after_call_url: Option<WebhookUrl>,
    pub custom_fields: CustomFields,
    pub during_call_filter: Filter,
    pub after_call_filter: Filter,
    /// Checked, secret values in their stored (sealed) form.
    pub during_call_headers: Vec<Header>,
    pub after_call_headers: Vec<Header>,
    /// Its own grace for a during-call webhook after its call's end.
    pub during_call_grace: Option<std::time::Duration>,
    /// How long an after-call webhook waits for a recording its end lacked.
    pub recording_wait: Option<std::time::Duration>,
    pub numbers: Vec<PhoneNumber>,
    /// Numbers outside the pool, with fixed fields; none of them is in `numbers`.
    pub static_numbers: Vec<StaticNumber>,
    pub timezone: Timezone,
}

impl ScenarioSettings {
    /// A scenario called `name` holding `numbers`, with nothing else set:
    /// no URLs, custom fields, conditions, headers or waits; the default
    /// zone. Set what differs with struct update syntax.
    pub fn named(name: &str, numbers: Vec<PhoneNumber>) -> Self {
        Self {
            name: name.to_owned(),
            during_call_url: None,
            after_call_url: None,
            custom_fields: CustomFields::from_trusted(Vec::new()),
            during_call_filter: Filter::default(),
            after_call_filter: Filter::default(),
            during_call_headers: Vec::new(),
            after_call_headers: Vec::new(),
            during_call_grace: None,
            recording_wait: None,
            numbers,
            static_numbers: Vec::new(),
            timezone: Timezone::default(),
        }
    }

    /// The grace as stored (whole seconds).
    fn grace_secs(&self) -> Option<i32> {
        self.during_call_grace.map(secs)
    }

    /// The recording wait as stored (whole seconds).
    fn recording_wait_secs(&self) -> Option<i32> {
        self.recording_wait.map(secs)
    }
}

/// A duration as a whole number of seconds, as stored.
fn secs(d: std::time::Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX)
}

/// Creates a scenario with its signing secret (as it is to be stored).
pub async fn create(
    pool: &PgPool,
    id: Uuid,
    settings: &ScenarioSettings,
    secret: &StoredSecret,
) -> Result<Scenario, StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query!(
        "insert into scenarios (id, name, during_call_url, after_call_url, custom_fields, timezone, signing_secret,
                                during_call_filter, after_call_filter, during_call_headers, after_call_headers,
                                during_call_grace_secs, recording_wait_secs)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        id,
        settings.name,
        settings.during_call_url.as_ref().map(WebhookUrl::as_str),
        settings.after_call_url.as_ref().map(WebhookUrl::as_str),
        Json(settings.custom_fields.as_slice()) as _,
        settings.timezone.name(),
        secret as _,
        Json(settings.during_call_filter.as_slice()) as _,
        Json(settings.after_call_filter.as_slice()) as _,
        Json(settings.during_call_headers.as_slice()) as _,
        Json(settings.after_call_headers.as_slice()) as _,
        settings.grace_secs(),
        settings.recording_wait_secs(),
    )
    .execute(&mut *tx)
    .await?;
    set_numbers(&mut tx, id, &settings.numbers, &settings.static_numbers).await?;
    sqlx::query!(
        "insert into endpoints (scenario_id, kind)
         values ($1, 'during_call'), ($1, 'after_call')",
        id
    )
    .execute(&mut *tx)
    .await?;
    let scenario = get(&mut *tx, id).await?;
    tx.commit().await?;
    Ok(scenario)
}

/// What a save did besides saving.
#[derive(Debug, Default)]
pub struct Saved {
    /// The kind of each pending delivery cancelled (its URL was removed).
    pub cancelled: Vec<DeliveryKind>,
    /// Endpoints re-enabled because their URL changed.
    pub enabled: Vec<(DeliveryKind, Transition)>,
    /// The during-call and after-call URLs before the save.
    pub before: (Option<String>, Option<String>),
}

/// Replaces a scenario's settings ("save scenario"). The secret and creation
/// time stay. Saving it without a kind's URL cancels that kind's pending
/// deliveries (`url_removed`) in the same transaction; giving an endpoint
/// another URL makes it healthy again (its waiting deliveries drain).
pub async fn update(
    pool: &PgPool,
    id: Uuid,
    settings: &ScenarioSettings,
    health: &HealthSettings,
) -> Result<(Scenario, Saved), StoreError> {
    let mut tx = pool.begin().await?;
    let before = sqlx::query!(
        "select during_call_url, after_call_url from scenarios where id = $1 for update",
        id
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(StoreError::NotFound)?;
    let updated = sqlx::query!(
        "update scenarios
            set name = $2, during_call_url = $3, after_call_url = $4, custom_fields = $5,
                timezone = $6, during_call_filter = $7, after_call_filter = $8,
                during_call_headers = $9, after_call_headers = $10, during_call_grace_secs = $11,
                recording_wait_secs = $12, updated_at = now()
          where id = $1",
        id,
        settings.name,
        settings.during_call_url.as_ref().map(WebhookUrl::as_str),
        settings.after_call_url.as_ref().map(WebhookUrl::as_str),
        Json(settings.custom_fields.as_slice()) as _,
        settings.timezone.name(),
        Json(settings.during_call_filter.as_slice()) as _,
        Json(settings.after_call_filter.as_slice()) as _,
        Json(settings.during_call_headers.as_slice()) as _,
        Json(settings.after_call_headers.as_slice()) as _,
        settings.grace_secs(),
        settings.recording_wait_secs(),
    )
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    set_numbers(&mut tx, id, &settings.numbers, &settings.static_numbers).await?;
    let removed: Vec<DeliveryKind> = [
        (DeliveryKind::DuringCall, &settings.during_call_url),
        (DeliveryKind::AfterCall, &settings.after_call_url),
    ]
    .into_iter()
    .filter(|(_, url)| url.is_none())
    .map(|(kind, _)| kind)
    .collect();
    let mut saved = Saved {
        cancelled: queue::cancel_pending(&mut tx, id, &removed, CancelReason::UrlRemoved).await?,
        before: (
            before.during_call_url.clone(),
            before.after_call_url.clone(),
        ),
        ..Saved::default()
    };
    for (kind, old, new) in [
        (
            DeliveryKind::DuringCall,
            before.during_call_url,
            &settings.during_call_url,
        ),
        (
            DeliveryKind::AfterCall,
            before.after_call_url,
            &settings.after_call_url,
        ),
    ] {
        let new = new.as_ref().map(WebhookUrl::as_str);
        if new.is_some() && new != old.as_deref() {
            if let (Some(t), _) = health::enable_in(&mut tx, id, kind, health).await? {
                saved.enabled.push((kind, t));
            }
        }
    }
    let scenario = get(&mut *tx, id).await?;
    tx.commit().await?;
    Ok((scenario, saved))
}

/// Deletes a scenario and its numbers; its pending deliveries are cancelled
/// (their calls and delivery history stay, for operators): the kind of each
/// is returned.
pub async fn delete(pool: &PgPool, id: Uuid) -> Result<Vec<DeliveryKind>, StoreError> {
    let mut tx = pool.begin().await?;
    let cancelled = queue::cancel_pending(
        &mut tx,
        id,
        DeliveryKind::ALL,
        CancelReason::ScenarioDeleted,
    )
    .await?;
    let deleted = sqlx::query!("delete from scenarios where id = $1", id)
        .execute(&mut *tx)
        .await?;
    if deleted.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    tx.commit().await?;
    Ok(cancelled)
}

pub async fn get(e: impl PgExecutor<'_>, id: Uuid) -> Result<Scenario, StoreError> {
    select(e, Some(id)).await?.pop().ok_or(StoreError::NotFound)
}

/// All scenarios, oldest first.
pub async fn list(e: impl PgExecutor<'_>) -> Result<Vec<Scenario>, StoreError> {
    select(e, None).await
}

/// The scenario `id`, or every scenario when `None`, oldest first.
async fn select(e: impl PgExecutor<'_>, id: Option<Uuid>) -> Result<Vec<Scenario>, StoreError> {
    Ok(sqlx::query_as!(
        Scenario,
        r#"select s.id, s.name, s.during_call_url, s.after_call_url,
                  s.custom_fields as "custom_fields: Json<Vec<CustomField>>",
                  s.during_call_filter as "during_call_filter: Json<Vec<Condition>>",
                  s.after_call_filter as "after_call_filter: Json<Vec<Condition>>",
                  s.during_call_headers as "during_call_headers: Json<Vec<Header>>",
                  s.after_call_headers as "after_call_headers: Json<Vec<Header>>",
                  s.during_call_grace_secs, s.recording_wait_secs,
                  s.timezone, s.signing_secret as "signing_secret: StoredSecret",
                  case when overlap_running(s.previous_secret_expires_at) then s.previous_secret_expires_at end
                    as previous_secret_expires_at,
                  s.created_at, s.updated_at,
                  array(select n.number from scenario_numbers n where n.scenario_id = s.id and not n.is_static order by n.number) as "numbers!",
                  coalesce((select jsonb_agg(jsonb_build_object('number', n.number, 'marker', n.marker,
                                    'source_level_1', n.source_level_1, 'source_level_2', n.source_level_2) order by n.number)
                              from scenario_numbers n where n.scenario_id = s.id and n.is_static), '[]') as "static_numbers!: Json<Vec<StaticNumber>>"
             from scenarios s
            where $1::uuid is null or s.id = $1
            order by s.id"#,
        id
    )
    .fetch_all(e)
    .await?)
}
