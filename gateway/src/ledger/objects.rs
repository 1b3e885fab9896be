//! The ledger as the API shows it: the balance and balance transactions (Stripe's shapes).

use entity::event::rfc3339;
use entity::money::Currency;
use entity::{balance_transactions, balances};
use poem_openapi::Object;
use serde::{Deserialize, Serialize};

/// An amount in one currency.
#[derive(Object, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceAmount {
    /// In the currency's minor unit; may be negative (a refund made at the provider).
    pub amount: i64,
    pub currency: Currency,
}

/// Your balance in the key's mode: what can be refunded or paid out now (`available`) and
/// what is not settled yet (`pending`), per currency.
#[derive(Object, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    pub object: crate::core::object_names::BalanceName,
    pub livemode: bool,
    pub available: Vec<BalanceAmount>,
    pub pending: Vec<BalanceAmount>,
}

impl Balance {
    pub fn of(livemode: bool, rows: &[balances::Model]) -> Balance {
        let each = |pick: fn(&balances::Model) -> i64| {
            rows.iter()
                .map(|b| BalanceAmount {
                    amount: pick(b),
                    currency: Currency::stored(&b.currency),
                })
                .collect()
        };
        Balance {
            object: crate::core::object_names::BalanceName::default(),
            livemode,
            available: each(|b| b.available),
            pending: each(|b| b.pending),
        }
    }
}

/// One movement of your money (`txn_…`).
#[derive(Object, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceTransaction {
    pub id: String,
    pub object: crate::core::object_names::BalanceTransactionName,
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub kind: entity::status::BalanceTransactionType,
    /// What your balance gained (positive) or lost (negative), in minor units.
    pub amount: i64,
    pub currency: Currency,
    /// `pending` until `available_on`, then `available`.
    pub status: entity::status::BalanceTransactionStatus,
    /// RFC 3339: when the funds are (or became) available.
    pub available_on: String,
    /// The payment, refund or payout that caused it; none for an adjustment.
    pub source: Option<String>,
    pub description: Option<String>,
    pub livemode: bool,
    pub created_at: String,
}

impl From<&balance_transactions::Model> for BalanceTransaction {
    fn from(t: &balance_transactions::Model) -> BalanceTransaction {
        BalanceTransaction {
            id: t.id.to_string(),
            object: crate::core::object_names::BalanceTransactionName::default(),
            kind: t.kind,
            amount: t.amount,
            currency: Currency::stored(&t.currency),
            status: t.status,
            available_on: rfc3339(t.available_on),
            source: t.source_id.clone(),
            description: t.description.clone(),
            livemode: t.livemode,
            created_at: rfc3339(t.created_at),
        }
    }
}

#[derive(Object, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceTransactionList {
    pub object: crate::core::object_names::ListName,
    pub data: Vec<BalanceTransaction>,
    pub has_more: bool,
}
