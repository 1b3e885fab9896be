//! The `usage_counters` table's sea-orm entity: one merchant's count of one metric in one mode
//! and month, as flushed from the cache (see `runtime::usage`).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "usage_counters")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub merchant_id: crate::ids::MerchantId,
    /// Test and live are counted apart.
    #[sea_orm(primary_key, auto_increment = false)]
    pub livemode: bool,
    /// `2026-11` (UTC).
    #[sea_orm(primary_key, auto_increment = false)]
    pub month: String,
    /// `api_requests`, `payments_created`, `volume:EUR`...
    #[sea_orm(primary_key, auto_increment = false)]
    pub metric: String,
    pub value: i64,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
