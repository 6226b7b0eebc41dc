//! `sqlx::migrate!` embeds the migrations when this crate compiles: a new
//! or changed migration must make it compile again (sqlx's advice).
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
