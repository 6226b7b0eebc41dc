//! Console sessions signed out (`console_signed_out`): the cookie is
//! signed and stateless, so a sign-out is remembered here for every process.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

use crate::StoreError;

/// Remembers that session `sid` signed out, until `forget_after` (when its
/// cookie would be refused anyway); forgets the sign-outs past theirs.
pub async fn sign_out(
    e: impl PgExecutor<'_>,
    sid: &str,
    forget_after: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query!(
        "with forgotten as (delete from console_signed_out where forget_after < now())
         insert into console_signed_out (sid, forget_after) values ($1, $2)
         on conflict (sid) do nothing",
        sid,
        forget_after
    )
    .execute(e)
    .await?;
    Ok(())
}

/// Whether session `sid` has signed out.
pub async fn signed_out(e: impl PgExecutor<'_>, sid: &str) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar!(
        r#"select exists (select 1 from console_signed_out where sid = $1) as "out!""#,
        sid
    )
    .fetch_one(e)
    .await?)
}
