//! The `balances` table's sea-orm entity.

use sea_orm::entity::prelude::*;

/// A merchant's balance in one mode and currency: the sums of its ledger entries to
/// `available` and `pending`, kept here so refunds and payouts reserve under one row lock.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "balances")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub merchant_id: crate::ids::MerchantId,
    #[sea_orm(primary_key, auto_increment = false)]
    pub livemode: bool,
    #[sea_orm(primary_key, auto_increment = false)]
    pub currency: String,
    pub available: i64,
    pub pending: i64,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
