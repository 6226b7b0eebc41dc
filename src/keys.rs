//! `callhook rotate-secret-key`: every scenario's secrets (its signing
//! secrets and its secret header values) re-sealed under the current key,
//! in one transaction.

use anyhow::Context as _;
use callhook_core::{EndpointKind, Header, Sealer};
use callhook_store::scenarios;
use sqlx::types::Uuid;
use sqlx::PgPool;

/// Re-seals every stored secret (signing secrets, current and previous, and
/// secret header values) that is not sealed with the current key, bound to
/// its scenario, yet; returns how many scenarios changed. A secret no known
/// key opens stops it, changing nothing.
pub async fn reseal_all(pool: &PgPool, sealer: &Sealer) -> anyhow::Result<u64> {
    let mut tx = pool.begin().await?;
    let mut changed = 0;
    for mut s in scenarios::lock_secrets(&mut tx).await? {
        let id = s.id;
        let open = |stored| {
            sealer
                .reseal(stored, id)
                .with_context(|| format!("scenario {id}'s signing secret: nothing was changed"))
        };
        let new_current = open(&s.current)?;
        let new_previous = match &s.previous {
            Some(p) => open(p)?,
            None => None,
        };
        let headers_changed = reseal_headers(
            sealer,
            id,
            EndpointKind::DuringCall,
            &mut s.during_call_headers,
        )? | reseal_headers(
            sealer,
            id,
            EndpointKind::AfterCall,
            &mut s.after_call_headers,
        )?;
        if new_current.is_none() && new_previous.is_none() && !headers_changed {
            continue;
        }
        if let Some(c) = new_current {
            s.current = c;
        }
        if new_previous.is_some() {
            s.previous = new_previous;
        }
        scenarios::set_secrets(&mut tx, &s).await?;
        changed += 1;
    }
    tx.commit().await?;
    Ok(changed)
}

/// Re-seals the secret values among `headers` in place; whether any changed.
fn reseal_headers(
    sealer: &Sealer,
    id: Uuid,
    kind: EndpointKind,
    headers: &mut [Header],
) -> anyhow::Result<bool> {
    let mut changed = false;
    for h in headers.iter_mut().filter(|h| h.secret) {
        let field = h.sealed_field(kind);
        let Some(stored) = &h.value else { continue };
        if let Some(new) = sealer.reseal_text(stored, id, &field).with_context(|| {
            format!(
                "scenario {id}'s secret header {}: nothing was changed",
                h.name
            )
        })? {
            h.value = Some(new);
            changed = true;
        }
    }
    Ok(changed)
}
