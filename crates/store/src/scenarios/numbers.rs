//! A scenario's tracking numbers (its pool) and static numbers, set by a save.

use callhook_core::PhoneNumber;
use sqlx::PgConnection;
use uuid::Uuid;

use super::StaticNumber;
use crate::StoreError;

/// Makes `numbers` (the pool) and `static_numbers` exactly the scenario's
/// numbers. A number that belongs to another scenario is refused, naming it.
/// A number's reservation history (`released_at`) survives a save.
///
/// Stays whole: the statements of one save, in order, in its transaction.
pub(super) async fn set_numbers(
    tx: &mut PgConnection,
    id: Uuid,
    numbers: &[PhoneNumber],
    static_numbers: &[StaticNumber],
) -> Result<(), StoreError> {
    let mut pooled: Vec<String> = numbers.iter().map(|n| n.as_str().to_owned()).collect();
    pooled.sort();
    pooled.dedup();
    let fixed: Vec<String> = static_numbers.iter().map(|n| n.number.clone()).collect();
    let markers: Vec<Option<String>> = static_numbers.iter().map(|n| n.marker.clone()).collect();
    let level_1: Vec<Option<String>> = static_numbers
        .iter()
        .map(|n| n.source_level_1.clone())
        .collect();
    let level_2: Vec<Option<String>> = static_numbers
        .iter()
        .map(|n| n.source_level_2.clone())
        .collect();
    let all: Vec<String> = pooled.iter().chain(&fixed).cloned().collect();
    sqlx::query!(
        "delete from scenario_numbers where scenario_id = $1 and number <> all($2)",
        id,
        &all
    )
    .execute(&mut *tx)
    .await?;
    // Rows are only written (and so locked) where something changes: a
    // locked pool number is skipped by concurrent reservations.
    sqlx::query!(
        "insert into scenario_numbers (number, scenario_id, is_static, marker, source_level_1, source_level_2)
         select n, $2::uuid, false, null::text, null::text, null::text from unnest($1::text[]) as n
         union all
         select f, $2::uuid, true, m, l1, l2 from unnest($3::text[], $4::text[], $5::text[], $6::text[]) as t (f, m, l1, l2)
         on conflict (number) do nothing",
        &pooled,
        id,
        &fixed,
        &markers as &[Option<String>],
        &level_1 as &[Option<String>],
        &level_2 as &[Option<String>],
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "update scenario_numbers n
            set is_static = d.is_static, marker = d.marker,
                source_level_1 = d.l1, source_level_2 = d.l2
           from (select p as number, false as is_static, null::text as marker, null::text as l1, null::text as l2
                   from unnest($1::text[]) as p
                 union all
                 select f, true, m, l1, l2 from unnest($3::text[], $4::text[], $5::text[], $6::text[]) as t (f, m, l1, l2)) d
          where n.number = d.number and n.scenario_id = $2
            and (n.is_static, n.marker, n.source_level_1, n.source_level_2)
                is distinct from (d.is_static, d.marker, d.l1, d.l2)",
        &pooled,
        id,
        &fixed,
        &markers as &[Option<String>],
        &level_1 as &[Option<String>],
        &level_2 as &[Option<String>],
    )
    .execute(&mut *tx)
    .await?;
    // A number another scenario owns (or is saving right now: the insert
    // waited for it) was skipped by "do nothing"; name it.
    let taken = sqlx::query!(
        "select n.number, n.scenario_id, s.name as scenario_name
           from scenario_numbers n join scenarios s on s.id = n.scenario_id
          where n.number = any($1) and n.scenario_id <> $2
          order by n.number limit 1",
        &all,
        id
    )
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(t) = taken {
        return Err(StoreError::NumberTaken {
            number: t.number,
            scenario_id: t.scenario_id,
            scenario_name: t.scenario_name,
        });
    }
    Ok(())
}
