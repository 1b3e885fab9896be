//! The `refunds` table's sea-orm entity.

use sea_orm::entity::prelude::*;

/// A refund (`re_…`) of part or all of a succeeded payment.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "refunds")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: crate::ids::RefundId,
    pub merchant_id: crate::ids::MerchantId,
    /// Test (`false`) or live: objects of one mode are invisible to keys of the other.
    pub livemode: bool,
    pub payment_id: crate::ids::PaymentId,
    pub amount: i64,
    /// `pending`, `succeeded` or `failed`.
    pub status: crate::status::RefundStatus,
    pub provider_reference: Option<String>,
    /// The idempotency key the provider got for it (derived from the merchant's key, or the
    /// refund id): asking again with it can never refund twice.
    pub provider_key: Option<String>,
    pub failure_message: Option<String>,
    /// Why the merchant refunded, when they said.
    pub reason: Option<crate::status::RefundReason>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
