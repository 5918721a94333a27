//! `sqlx::migrate!` embeds the migration directories at compile time; a new migration file must
//! rebuild the crate.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=migrations_sqlite");
}
