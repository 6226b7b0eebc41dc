//! A scenario's secrets: rotating its signing secret, and re-sealing every
//! stored secret under a new key.

use callhook_core::{Header, StoredSecret};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::{get, Scenario};
use crate::StoreError;

/// Gives the scenario a fresh signing secret; the current one keeps signing
/// alongside it for `overlap` (a rotation during an overlap ends the older
/// secret's overlap at once).
pub async fn rotate_secret(
    pool: &PgPool,
    id: Uuid,
    secret: &StoredSecret,
    overlap: std::time::Duration,
) -> Result<Scenario, StoreError> {
    let mut tx = pool.begin().await?;
    let updated = sqlx::query!(
        "update scenarios
            set previous_signing_secret = signing_secret,
                previous_secret_expires_at = now() + make_interval(secs => $3),
                signing_secret = $2,
                updated_at = now()
          where id = $1",
        id,
        secret as _,
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

/// A scenario's stored secrets: its signing secrets and its headers (whose
/// secret values are sealed).
pub struct StoredSecrets {
    pub id: Uuid,
    pub current: StoredSecret,
    pub previous: Option<StoredSecret>,
    pub during_call_headers: Vec<Header>,
    pub after_call_headers: Vec<Header>,
}

/// Every scenario's stored secrets, locked, for re-sealing them under a new
/// key.
pub async fn lock_secrets(tx: &mut PgConnection) -> Result<Vec<StoredSecrets>, StoreError> {
    let rows = sqlx::query!(
        r#"select id, signing_secret as "signing_secret: StoredSecret",
                  previous_signing_secret as "previous_signing_secret: StoredSecret",
                  during_call_headers as "during_call_headers: Json<Vec<Header>>",
                  after_call_headers as "after_call_headers: Json<Vec<Header>>"
             from scenarios order by id for update"#
    )
    .fetch_all(&mut *tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| StoredSecrets {
            id: r.id,
            current: r.signing_secret,
            previous: r.previous_signing_secret,
            during_call_headers: r.during_call_headers.0,
            after_call_headers: r.after_call_headers.0,
        })
        .collect())
}

/// Stores a scenario's secrets in their new form.
pub async fn set_secrets(tx: &mut PgConnection, s: &StoredSecrets) -> Result<(), StoreError> {
    sqlx::query!(
        "update scenarios set signing_secret = $2, previous_signing_secret = $3,
                during_call_headers = $4, after_call_headers = $5
          where id = $1",
        s.id,
        &s.current as _,
        s.previous.as_ref() as _,
        Json(s.during_call_headers.as_slice()) as _,
        Json(s.after_call_headers.as_slice()) as _,
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}
