//! The `callhook` binary's library half: typed configuration, wiring and the
//! serve loop. Business rules live in the crates under `crates/`; this only
//! connects them.

pub mod config;
pub mod keys;
pub mod startup;
pub mod telemetry;
pub mod upkeep;

pub use config::{Cli, Command, Role, ServeConfig};
pub use startup::{connect_db, run};
