//! A payout as merchants see and send it: the request (`NewPayout` with its `Destination`)
//! and the object in API answers and `payout.*` events (`Payout`), one shape for both.

use entity::money::Currency;
use std::collections::{BTreeMap, HashMap};

use entity::payouts;
use entity::status::{PayoutStatus, Provider};
use poem_openapi::Object;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::core::error::ValidationError;
use crate::core::text::Text;

/// The providers that make payouts here (simulated in test mode only); the spec lists these.
pub const PAYOUT_PROVIDERS: &[Provider] = &[Provider::Moneroo, Provider::Simulated];

/// A destination's `type`, as the API names it.
pub const DESTINATION_TYPES: &[&str] = &["mobile_money", "bank_account"];

/// How a sandbox payout may end (`POST /v1/sandbox/payouts/{id}/complete`).
pub const SANDBOX_PAYOUT_OUTCOMES: &[PayoutStatus] =
    &[PayoutStatus::Succeeded, PayoutStatus::Failed];

/// Where a payout goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A mobile money wallet: the phone (digits, country code first) and the operator (for
    /// Moneroo, its payout method, e.g. `mtn_bj`).
    MobileMoney { phone: String, operator: String },
    BankAccount {
        account_number: String,
        bank_code: String,
        holder_name: String,
    },
}

impl Destination {
    pub fn to_json(&self) -> Value {
        match self {
            Destination::MobileMoney { phone, operator } => {
                json!({"type": "mobile_money", "phone": phone, "operator": operator})
            }
            Destination::BankAccount {
                account_number,
                bank_code,
                holder_name,
            } => json!({"type": "bank_account", "account_number": account_number,
                        "bank_code": bank_code, "holder_name": holder_name}),
        }
    }
}

/// A payout to make, checked.
#[derive(Debug, Clone)]
pub struct NewPayout {
    pub amount: i64,
    /// ISO 4217, upper case.
    pub currency: String,
    pub provider: Provider,
    pub destination: Destination,
    pub reference: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

impl NewPayout {
    /// What identifies the request for idempotency.
    pub fn fingerprint(&self) -> String {
        let canonical = json!({
            "amount": self.amount, "currency": self.currency, "provider": self.provider,
            "destination": self.destination.to_json(), "reference": self.reference,
            "metadata": self.metadata,
        });
        entity::signature::sha256_hex(canonical.to_string().as_bytes())
    }
}

/// The providers that pay out, and the destinations each takes.
pub fn check_provider(
    provider: Provider,
    destination: &Destination,
) -> Result<(), ValidationError> {
    match (provider, destination) {
        (Provider::Simulated, _) | (Provider::Moneroo, Destination::MobileMoney { .. }) => Ok(()),
        (Provider::Moneroo, Destination::BankAccount { .. }) => Err(ValidationError::new(
            "destination[type]",
            "destination_not_supported",
            "Moneroo payouts go to mobile money wallets here (bank accounts are not supported yet).",
        )),
        _ => Err(ValidationError::new(
            "provider",
            "payouts_not_supported",
            format!(
                "{provider} does not make payouts here; use moneroo (or simulated in test mode)."
            ),
        )),
    }
}

/// The payout as its events carry it: the API's shape.
pub fn view(p: &payouts::Model) -> Value {
    serde_json::to_value(Payout::from(p)).unwrap_or_default()
}

/// Where the money goes: a mobile money wallet (`phone`, `operator`) or a bank account
/// (`account_number`, `bank_code`, `holder_name`).
#[derive(Object, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[oai(deny_unknown_fields)]
pub struct PayoutDestination {
    /// `mobile_money` or `bank_account`.
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub kind: Text,
    /// The wallet's phone number, digits only, country code first (e.g. `22951345020`).
    pub phone: Option<Text>,
    /// The mobile money operator; for Moneroo its payout method (e.g. `mtn_bj`).
    pub operator: Option<Text>,
    pub account_number: Option<Text>,
    pub bank_code: Option<Text>,
    pub holder_name: Option<Text>,
}

/// A payout, the same in API responses and in `payout.*` events.
#[derive(Object, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Payout {
    pub id: String,
    pub object: crate::core::object_names::PayoutName,
    pub amount: i64,
    pub currency: Currency,
    pub provider: Provider,
    pub destination: PayoutDestination,
    pub reference: Option<String>,
    pub metadata: HashMap<String, String>,
    /// `succeeded` and `failed` are final.
    pub status: PayoutStatus,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// `true` for live mode, `false` for test mode.
    #[serde(default)]
    pub livemode: bool,
    /// The balance transaction (`txn_…`) that took its amount from your balance when it was
    /// made; a failed payout gives it back with a `payout_failure` transaction.
    #[serde(default)]
    pub balance_transaction: Option<String>,
}

impl From<&payouts::Model> for Payout {
    fn from(p: &payouts::Model) -> Payout {
        let field = |k: &str| p.destination[k].as_str().map(|v| Text(v.to_string()));
        Payout {
            id: p.id.to_string(),
            object: crate::core::object_names::PayoutName::default(),
            amount: p.amount,
            currency: Currency::stored(&p.currency),
            provider: p.provider,
            destination: PayoutDestination {
                kind: field("type").unwrap_or_else(|| Text(String::new())),
                phone: field("phone"),
                operator: field("operator"),
                account_number: field("account_number"),
                bank_code: field("bank_code"),
                holder_name: field("holder_name"),
            },
            reference: p.reference.clone(),
            metadata: p
                .metadata
                .as_ref()
                .and_then(|m| serde_json::from_value(m.clone()).ok())
                .unwrap_or_default(),
            status: p.status,
            failure_code: p.failure_code.clone(),
            failure_message: p.failure_message.clone(),
            created_at: entity::event::rfc3339(p.created_at),
            updated_at: entity::event::rfc3339(p.updated_at),
            livemode: p.livemode,
            balance_transaction: Some(crate::ledger::transaction_id_of(&p.id).to_string()),
        }
    }
}
