//! A merchant's endpoints version: a number that grows with every change to the merchant's
//! webhook endpoints (a trigger bumps it in the change's own transaction), so a new payment's
//! statement can read it and its event can say which endpoints it was created after. The
//! worker keeps each merchant's enabled endpoints in memory and reads them again only when an
//! event names a newer version than the one it holds (`worker/src/subscribers.rs`).
//!
//! The trigger is PostgreSQL's; on SQLite (the embedded mode) events carry no version and the
//! worker always reads the endpoints.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// A failing streak's bookkeeping (`consecutive_failures`, `failing_since`, rewritten on every
/// failed attempt) is not a change anyone subscribing needs to see; any other column is.
const UP_POSTGRES: &[&str] = &[
    "CREATE FUNCTION bump_endpoints_version() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
         UPDATE merchants SET endpoints_version = endpoints_version + 1
          WHERE id = CASE WHEN TG_OP = 'DELETE' THEN OLD.merchant_id ELSE NEW.merchant_id END;
         IF TG_OP = 'UPDATE' AND OLD.merchant_id <> NEW.merchant_id THEN
             UPDATE merchants SET endpoints_version = endpoints_version + 1
              WHERE id = OLD.merchant_id;
         END IF;
         RETURN NULL;
     END $$",
    "CREATE TRIGGER webhook_endpoints_added_or_removed
         AFTER INSERT OR DELETE ON webhook_endpoints
         FOR EACH ROW EXECUTE FUNCTION bump_endpoints_version()",
    "CREATE TRIGGER webhook_endpoints_changed
         AFTER UPDATE ON webhook_endpoints
         FOR EACH ROW
         WHEN ((to_jsonb(OLD) - 'consecutive_failures' - 'failing_since')
               IS DISTINCT FROM (to_jsonb(NEW) - 'consecutive_failures' - 'failing_since'))
         EXECUTE FUNCTION bump_endpoints_version()",
];

const DOWN_POSTGRES: &[&str] = &[
    "DROP TRIGGER IF EXISTS webhook_endpoints_changed ON webhook_endpoints",
    "DROP TRIGGER IF EXISTS webhook_endpoints_added_or_removed ON webhook_endpoints",
    "DROP FUNCTION IF EXISTS bump_endpoints_version()",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("merchants")
                    .add_column(big_integer("endpoints_version").default(0))
                    .to_owned(),
            )
            .await?;
        if manager.get_database_backend() == DbBackend::Postgres {
            crate::execute_all(manager, UP_POSTGRES).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Postgres {
            crate::execute_all(manager, DOWN_POSTGRES).await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table("merchants")
                    .drop_column("endpoints_version")
                    .to_owned(),
            )
            .await
    }
}
