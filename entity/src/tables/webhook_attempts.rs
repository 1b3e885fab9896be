//! The `webhook_attempts` table's sea-orm entity.

use sea_orm::entity::prelude::*;

/// One HTTP call of a delivery.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_attempts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: crate::ids::AttemptId,
    pub delivery_id: crate::ids::DeliveryId,
    pub merchant_id: crate::ids::MerchantId,
    /// Test (`false`) or live, as its delivery.
    pub livemode: bool,
    pub attempt_number: i32,
    pub http_status: Option<i32>,
    pub error_message: Option<String>,
    /// Why it failed: `timeout`, `connect`, `tls`, `dns`, `http_3xx`, `http_4xx`, `http_5xx`
    /// or `blocked`; none for a success.
    pub error_class: Option<String>,
    /// The first few KiB of the answer.
    pub response_body: Option<String>,
    pub duration_ms: i64,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
