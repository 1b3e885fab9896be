//! The `webhook_deliveries` table's sea-orm entity.

use sea_orm::entity::prelude::*;

/// One event to one endpoint; unique on `(event_id, endpoint_id)`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_deliveries")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: crate::ids::DeliveryId,
    pub merchant_id: crate::ids::MerchantId,
    /// Test (`false`) or live: objects of one mode are invisible to keys of the other.
    pub livemode: bool,
    pub event_id: crate::ids::EventId,
    pub endpoint_id: crate::ids::EndpointId,
    /// `pending`, `processing`, `succeeded` or `failed`.
    pub status: crate::status::DeliveryStatus,
    /// Attempts in the current round (a manual retry starts a new round).
    pub attempts: i32,
    /// Attempts made in earlier rounds: an attempt's number is `earlier_attempts + attempts`.
    pub earlier_attempts: i32,
    pub next_retry_at: Option<DateTimeUtc>,
    /// While `processing`: the claim's lease. Past it, any worker may claim the row again.
    pub locked_until: Option<DateTimeUtc>,
    /// While `processing`: the claim's random token. The claimant's writes are fenced on it,
    /// so its lease may be renewed while a takeover (a new token) still shuts it out.
    pub lease_token: Option<String>,
    pub last_attempt_at: Option<DateTimeUtc>,
    pub http_status: Option<i32>,
    pub error_message: Option<String>,
    pub delivered_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
