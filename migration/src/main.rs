//! `cargo run -p migration -- up|status` against `DATABASE_URL`.

use migration::{Migrator, MigratorTrait};
use sea_orm_migration::sea_orm::Database;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "sqlite://payrail.db?mode=rwc".to_string());
    let db = Database::connect(&url).await?;
    match std::env::args().nth(1).as_deref() {
        Some("up") | None => {
            Migrator::up(&db, None).await?;
            println!("migrations applied");
        }
        Some("status") => Migrator::status(&db).await?,
        Some(other) => return Err(format!("unknown command {other:?}: use up or status").into()),
    }
    Ok(())
}
