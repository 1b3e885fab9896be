//! The `reconciliation_items` table's sea-orm entity.

use sea_orm::entity::prelude::*;

/// A difference the reconciliation with a provider found, about one payment, refund or payout.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "reconciliation_items")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: crate::ids::ReconciliationItemId,
    pub merchant_id: crate::ids::MerchantId,
    pub livemode: bool,
    pub provider: crate::status::Provider,
    pub kind: crate::status::ReconciliationKind,
    /// The payment (`pay_…`), refund (`re_…`) or payout (`po_…`) it is about.
    pub object_id: String,
    pub provider_reference: Option<String>,
    /// What Payrail's ledger says.
    pub expected: String,
    /// What the provider reports.
    pub reported: String,
    pub status: crate::status::ReconciliationStatus,
    /// How it was settled (an operator's note), once it is.
    pub resolution: Option<String>,
    pub first_seen_at: DateTimeUtc,
    pub last_seen_at: DateTimeUtc,
    pub resolved_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
