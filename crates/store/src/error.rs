/// What can go wrong talking to the database, sorted by what the caller
/// should do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row asked for does not exist.
    #[error("not found")]
    NotFound,
    /// A tracking number already belongs to another scenario.
    #[error("number {number} already belongs to scenario {scenario_name:?} ({scenario_id})")]
    NumberTaken {
        number: String,
        scenario_id: uuid::Uuid,
        scenario_name: String,
    },
    /// A stored value is damaged (edited by hand, say): what and where, so an
    /// operator can fix it.
    #[error("{0}")]
    Corrupt(String),
    /// The database cannot be reached or is shutting down: retry later.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// Anything else: a bug or a broken database.
    #[error("database error: {0}")]
    Db(#[source] sqlx::Error),
}

impl StoreError {
    /// A deadlock or serialization failure: the transaction was rolled back
    /// and may simply be run again.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Db(sqlx::Error::Database(db)) => {
                matches!(db.code().as_deref(), Some("40P01" | "40001"))
            }
            _ => false,
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if is_unavailable(&e) {
            StoreError::Unavailable(e)
        } else if matches!(e, sqlx::Error::RowNotFound) {
            StoreError::NotFound
        } else {
            StoreError::Db(e)
        }
    }
}

/// True for errors that mean "the database is not there right now" (connection
/// refused or lost, pool exhausted, server shutting down or starting up), as
/// opposed to a bad statement.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            // 08: connection exception; 57P01-03: admin shutdown, crash
            // shutdown, cannot connect now; 53300: too many connections.
            c.starts_with("08") || c.starts_with("57P") || c == "53300"
        }),
        _ => false,
    }
}
