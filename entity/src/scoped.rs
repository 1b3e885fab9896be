//! Tables whose rows belong to a merchant in one mode, and the filter that keeps every read
//! and write inside a [`Scope`]: `Entity::find().filter(scope.of::<Entity>())`.

use sea_orm::{ColumnTrait, Condition, EntityTrait};

use crate::ids::Scope;
use crate::tables::*;

/// A table with `merchant_id` and `livemode` columns.
pub trait Scoped: EntityTrait {
    fn merchant_column() -> Self::Column;
    fn livemode_column() -> Self::Column;
}

macro_rules! scoped {
    ($($table:ident),+ $(,)?) => {$(
        impl Scoped for $table::Entity {
            fn merchant_column() -> $table::Column {
                $table::Column::MerchantId
            }
            fn livemode_column() -> $table::Column {
                $table::Column::Livemode
            }
        }
    )+};
}

scoped!(
    api_keys,
    payments,
    refunds,
    events,
    webhook_endpoints,
    webhook_deliveries,
    webhook_attempts,
    payouts,
    logs,
    idempotency_keys,
    balance_transactions,
    balances,
    ledger_entries,
    reconciliation_items,
    usage_counters,
);

impl Scope {
    /// The rows of `E` that belong to this merchant in this mode.
    pub fn of<E: Scoped>(&self) -> Condition {
        Condition::all()
            .add(E::merchant_column().eq(self.merchant_id.as_str()))
            .add(E::livemode_column().eq(self.livemode))
    }
}

macro_rules! owned {
    ($($table:ident),+ $(,)?) => {$(
        impl $table::Model {
            /// The merchant and mode this row belongs to.
            pub fn scope(&self) -> Scope {
                Scope::new(self.merchant_id.clone(), self.livemode)
            }
        }
    )+};
}

owned!(
    api_keys,
    payments,
    refunds,
    events,
    webhook_endpoints,
    webhook_deliveries,
    payouts,
    balance_transactions,
    balances,
    reconciliation_items,
);
