//! The `ledger_entries` table's sea-orm entity.

use sea_orm::entity::prelude::*;

/// One posting of a balance transaction to one account of one merchant, mode and currency.
/// The entries of a transaction sum to zero; a merchant's `available` and `pending` balances
/// are the sums of its entries to those accounts.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "ledger_entries")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub transaction_id: crate::ids::BalanceTransactionId,
    pub merchant_id: crate::ids::MerchantId,
    pub livemode: bool,
    pub currency: String,
    pub account: crate::status::LedgerAccount,
    pub amount: i64,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
