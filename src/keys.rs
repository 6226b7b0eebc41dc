//! `callhook rotate-secret-key`: every scenario's signing secrets re-sealed
//! under the current key, in one transaction.

use anyhow::Context as _;
use callhook_core::Sealer;
use callhook_store::scenarios;
use sqlx::PgPool;

/// Re-seals every stored signing secret (current and previous) that is not
/// sealed with the current key, bound to its scenario, yet; returns how many scenarios changed. A
/// secret no known key opens stops it, changing nothing.
pub async fn reseal_all(pool: &PgPool, sealer: &Sealer) -> anyhow::Result<u64> {
    let mut tx = pool.begin().await?;
    let mut changed = 0;
    for (id, current, previous) in scenarios::lock_secrets(&mut tx).await? {
        let open = |s| {
            sealer
                .reseal(s, id)
                .with_context(|| format!("scenario {id}'s signing secret: nothing was changed"))
        };
        let new_current = open(&current)?;
        let new_previous = match &previous {
            Some(p) => open(p)?,
            None => None,
        };
        if new_current.is_none() && new_previous.is_none() {
            continue;
        }
        let current = new_current.unwrap_or(current);
        let previous = new_previous.or(previous);
        scenarios::set_secrets(&mut tx, id, &current, previous.as_ref()).await?;
        changed += 1;
    }
    tx.commit().await?;
    Ok(changed)
}
