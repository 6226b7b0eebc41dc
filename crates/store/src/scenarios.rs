//! The scenario store: settings, tracking numbers, signing secret.

use callhook_core::{CustomField, CustomFields, PhoneNumber, SigningSecret, Timezone, WebhookUrl};
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

use crate::StoreError;

/// A scenario as stored.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub id: Uuid,
    pub name: String,
    pub during_call_url: Option<String>,
    pub after_call_url: Option<String>,
    pub custom_fields: Json<Vec<CustomField>>,
    pub timezone: String,
    pub signing_secret: String,
    /// Until then, webhooks are also signed with the secret before the last
    /// rotation (null: no rotation overlap running).
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub numbers: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Scenario {
    /// The zone as a type; the database only ever holds parsed zones.
    pub fn tz(&self) -> Timezone {
        Timezone::parse(&self.timezone, "timezone").unwrap_or_default()
    }

    pub fn fields(&self) -> CustomFields {
        CustomFields::from_trusted(self.custom_fields.0.clone())
    }

    pub fn url_for(&self, kind: callhook_core::DeliveryKind) -> Option<&str> {
        match kind {
            callhook_core::DeliveryKind::DuringCall => self.during_call_url.as_deref(),
            callhook_core::DeliveryKind::AfterCall => self.after_call_url.as_deref(),
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
    pub numbers: Vec<PhoneNumber>,
    pub timezone: Timezone,
}

/// Creates a scenario with a fresh signing secret.
pub async fn create(pool: &PgPool, settings: &ScenarioSettings) -> Result<Scenario, StoreError> {
    let mut tx = pool.begin().await?;
    let id = Uuid::now_v7();
    let secret = SigningSecret::generate().expose();
    sqlx::query!(
        "insert into scenarios (id, name, during_call_url, after_call_url, custom_fields, timezone, signing_secret)
         values ($1, $2, $3, $4, $5, $6, $7)",
        id,
        settings.name,
        settings.during_call_url.as_ref().map(WebhookUrl::as_str),
        settings.after_call_url.as_ref().map(WebhookUrl::as_str),
        Json(settings.custom_fields.as_slice()) as _,
        settings.timezone.name(),
        secret,
    )
    .execute(&mut *tx)
    .await?;
    set_numbers(&mut tx, id, &settings.numbers).await?;
    let scenario = get(&mut *tx, id).await?;
    tx.commit().await?;
    Ok(scenario)
}

/// Replaces a scenario's settings ("save scenario"). The secret and creation
/// time stay.
pub async fn update(
    pool: &PgPool,
    id: Uuid,
    settings: &ScenarioSettings,
) -> Result<Scenario, StoreError> {
    let mut tx = pool.begin().await?;
    let updated = sqlx::query!(
        "update scenarios
            set name = $2, during_call_url = $3, after_call_url = $4, custom_fields = $5,
                timezone = $6, updated_at = now()
          where id = $1",
        id,
        settings.name,
        settings.during_call_url.as_ref().map(WebhookUrl::as_str),
        settings.after_call_url.as_ref().map(WebhookUrl::as_str),
        Json(settings.custom_fields.as_slice()) as _,
        settings.timezone.name(),
    )
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    set_numbers(&mut tx, id, &settings.numbers).await?;
    let scenario = get(&mut *tx, id).await?;
    tx.commit().await?;
    Ok(scenario)
}

/// Deletes a scenario and its numbers; its pending deliveries are cancelled
/// (their calls and delivery history stay, for operators).
pub async fn delete(pool: &PgPool, id: Uuid) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query!(
        "update deliveries
            set state = 'cancelled', last_error = 'scenario_deleted', next_attempt_at = null,
                lease_token = null, updated_at = now()
          where scenario_id = $1 and state = 'pending'",
        id
    )
    .execute(&mut *tx)
    .await?;
    let deleted = sqlx::query!("delete from scenarios where id = $1", id)
        .execute(&mut *tx)
        .await?;
    if deleted.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    tx.commit().await?;
    Ok(())
}

/// Gives the scenario a fresh signing secret; the current one keeps signing
/// alongside it for `overlap` (a rotation during an overlap ends the older
/// secret's overlap at once).
pub async fn rotate_secret(
    pool: &PgPool,
    id: Uuid,
    overlap: std::time::Duration,
) -> Result<Scenario, StoreError> {
    let mut tx = pool.begin().await?;
    let secret = SigningSecret::generate().expose();
    let updated = sqlx::query!(
        "update scenarios
            set previous_signing_secret = signing_secret,
                previous_secret_expires_at = now() + make_interval(secs => $3),
                signing_secret = $2,
                updated_at = now()
          where id = $1",
        id,
        secret,
        overlap.as_secs_f64(),
    )
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    let scenario = get(&mut *tx, id).await?;
    tx.commit().await?;
    Ok(scenario)
}

pub async fn get(e: impl PgExecutor<'_>, id: Uuid) -> Result<Scenario, StoreError> {
    sqlx::query_as!(
        Scenario,
        r#"select s.id, s.name, s.during_call_url, s.after_call_url,
                  s.custom_fields as "custom_fields: Json<Vec<CustomField>>",
                  s.timezone, s.signing_secret,
                  case when s.previous_secret_expires_at > now() then s.previous_secret_expires_at end
                    as previous_secret_expires_at,
                  s.created_at, s.updated_at,
                  array(select n.number from scenario_numbers n where n.scenario_id = s.id order by n.number) as "numbers!"
             from scenarios s
            where s.id = $1"#,
        id
    )
    .fetch_optional(e)
    .await?
    .ok_or(StoreError::NotFound)
}

/// All scenarios, oldest first.
pub async fn list(e: impl PgExecutor<'_>) -> Result<Vec<Scenario>, StoreError> {
    Ok(sqlx::query_as!(
        Scenario,
        r#"select s.id, s.name, s.during_call_url, s.after_call_url,
                  s.custom_fields as "custom_fields: Json<Vec<CustomField>>",
                  s.timezone, s.signing_secret,
                  case when s.previous_secret_expires_at > now() then s.previous_secret_expires_at end
                    as previous_secret_expires_at,
                  s.created_at, s.updated_at,
                  array(select n.number from scenario_numbers n where n.scenario_id = s.id order by n.number) as "numbers!"
             from scenarios s
            order by s.id"#
    )
    .fetch_all(e)
    .await?)
}

/// The scenario a tracking number belongs to.
pub async fn find_by_number(
    e: impl PgExecutor<'_>,
    number: &str,
) -> Result<Option<Uuid>, StoreError> {
    Ok(sqlx::query_scalar!(
        "select scenario_id from scenario_numbers where number = $1",
        number
    )
    .fetch_optional(e)
    .await?)
}

/// Makes `numbers` exactly the scenario's numbers. A number that belongs to
/// another scenario is refused, naming it.
async fn set_numbers(
    tx: &mut PgConnection,
    id: Uuid,
    numbers: &[PhoneNumber],
) -> Result<(), StoreError> {
    let mut numbers: Vec<String> = numbers.iter().map(|n| n.as_str().to_owned()).collect();
    numbers.sort();
    numbers.dedup();
    sqlx::query!(
        "delete from scenario_numbers where scenario_id = $1 and number <> all($2)",
        id,
        &numbers
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "insert into scenario_numbers (number, scenario_id)
         select n, $2 from unnest($1::text[]) as n
         on conflict (number) do nothing",
        &numbers,
        id
    )
    .execute(&mut *tx)
    .await?;
    // A number another scenario owns (or is saving right now: the insert
    // waited for it) was skipped by "do nothing"; name it.
    let taken = sqlx::query!(
        "select number, scenario_id from scenario_numbers
          where number = any($1) and scenario_id <> $2
          order by number limit 1",
        &numbers,
        id
    )
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(t) = taken {
        return Err(StoreError::NumberTaken {
            number: t.number,
            scenario_id: t.scenario_id,
        });
    }
    Ok(())
}
