//! The `idempotency_keys` table's sea-orm entity.

use sea_orm::entity::prelude::*;

/// The first response to a POST with an `Idempotency-Key`, replayed for the same key and body.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "idempotency_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub merchant_id: crate::ids::MerchantId,
    /// A key is the merchant's in one mode: the same key in test and live are two keys.
    #[sea_orm(primary_key, auto_increment = false)]
    pub livemode: bool,
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    /// Which operation the key was used for (`POST /v1/payments`), so a key is not reused
    /// across operations.
    pub operation: String,
    /// SHA-256 of the request body.
    pub request_hash: String,
    pub response_status: i32,
    pub response_body: String,
    /// When the claim was made or last refreshed by its request's heartbeat.
    pub created_at: DateTimeUtc,
    /// The process that holds an unfinished claim: the key of the advisory lock all its
    /// connections hold (`runtime::db::PROCESS_KEY`). Null for older claims.
    pub owner: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
