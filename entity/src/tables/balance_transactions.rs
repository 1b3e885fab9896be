//! The `balance_transactions` table's sea-orm entity.

use sea_orm::entity::prelude::*;

/// One movement of a merchant's money (`txn_…`), as the merchant sees it: a charge, a refund,
/// a payout, the release of one of those that failed, or an adjustment. Its postings are in
/// `ledger_entries` and always sum to zero.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "balance_transactions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: crate::ids::BalanceTransactionId,
    pub merchant_id: crate::ids::MerchantId,
    pub livemode: bool,
    /// ISO 4217, upper case.
    pub currency: String,
    #[sea_orm(column_name = "type")]
    pub kind: crate::status::BalanceTransactionType,
    /// The payment, refund or payout that caused it (none for an adjustment).
    pub source_id: Option<String>,
    /// The change to the merchant's balance, in minor units: positive in, negative out.
    pub amount: i64,
    /// `pending` until `available_on`, then `available`.
    pub status: crate::status::BalanceTransactionStatus,
    pub available_on: DateTimeUtc,
    pub description: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
