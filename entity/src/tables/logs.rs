//! The `logs` table's sea-orm entity.

use sea_orm::entity::prelude::*;

/// A log store entry. `merchant_id` is null for operator-only entries (an API 5xx before the
/// merchant was known); a merchant sees only its own.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "logs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: crate::ids::LogId,
    pub merchant_id: Option<crate::ids::MerchantId>,
    /// Test (`false`) or live: objects of one mode are invisible to keys of the other.
    pub livemode: bool,
    /// `debug`, `info`, `warning`, `error` or `critical`.
    pub level: crate::status::LogLevel,
    pub message: String,
    /// Who wrote it: `merchant:<free text>`, `payments`, `api`, `webhooks`.
    pub source: String,
    pub context: Option<Json>,
    pub request_id: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
