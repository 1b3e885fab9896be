//! The `api_keys` table's sea-orm entity.

use sea_orm::entity::prelude::*;

/// A merchant's secret key. Only its SHA-256 is stored; `prefix` is what a dashboard shows.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: crate::ids::ApiKeyId,
    pub merchant_id: crate::ids::MerchantId,
    #[sea_orm(unique)]
    pub key_hash: String,
    pub prefix: String,
    pub livemode: bool,
    pub created_at: DateTimeUtc,
    /// A rolled key keeps working until then.
    pub expires_at: Option<DateTimeUtc>,
    /// A revoked key stops working at once.
    pub revoked_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
