//! Payouts: money sent from a merchant's available balance to a mobile money wallet or a bank
//! account, through Moneroo (or the simulated provider in test mode).
//!
//! - **Balance.** Available = succeeded payments less what was refunded, less every payout
//!   not failed, per currency. A payout is recorded only if it fits, checked with the
//!   merchant's row locked (`FOR UPDATE`), so concurrent payouts can never overdraw together.
//! - **States.** `pending` (recorded) → `processing` (the provider has it) → `succeeded` |
//!   `failed`; final states never move. Each change commits with its `payout.*` event.
//! - **Truth.** A provider's webhook is never believed: the payout is re-queried
//!   (`GET /v1/payouts/{id}/verify` for Moneroo), from the webhook and from the poller.

use std::collections::{BTreeMap, HashMap};

use chrono::Utc;
use entity::event::EventType;
use entity::ids::{MerchantId, PayoutId};
use entity::payment_status::PaymentStatus;
use entity::status::{PayoutStatus, Provider};
use entity::{merchants, payments, payouts};
use poem_openapi::Object;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect,
    TransactionSession, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::api::text::Text;

use crate::error::{ServiceError, ValidationError};
use crate::providers::Providers;

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

/// What the merchant can pay out in `currency` now.
pub async fn available_balance<C: ConnectionTrait>(
    db: &C,
    merchant_id: &MerchantId,
    currency: &str,
) -> Result<i64, DbErr> {
    let received: Option<i64> = payments::Entity::find()
        .select_only()
        .column_as(
            Expr::cust("CAST(COALESCE(SUM(amount - amount_refunded), 0) AS BIGINT)"),
            "received",
        )
        .filter(payments::Column::MerchantId.eq(merchant_id))
        .filter(payments::Column::Currency.eq(currency))
        .filter(payments::Column::Status.is_in([PaymentStatus::Succeeded, PaymentStatus::Refunded]))
        .into_tuple()
        .one(db)
        .await?;
    let paid_out: Option<i64> = payouts::Entity::find()
        .select_only()
        .column_as(
            Expr::cust("CAST(COALESCE(SUM(amount), 0) AS BIGINT)"),
            "paid_out",
        )
        .filter(payouts::Column::MerchantId.eq(merchant_id))
        .filter(payouts::Column::Currency.eq(currency))
        .filter(payouts::Column::Status.ne(PayoutStatus::Failed))
        .into_tuple()
        .one(db)
        .await?;
    Ok(received.unwrap_or(0) - paid_out.unwrap_or(0))
}

/// Records a payout (`pending`) if the balance covers it, with its `payout.pending` event, in
/// the caller's transaction. The merchant's row is locked first: payouts of one merchant are
/// decided one at a time.
pub async fn record<C: ConnectionTrait>(
    txn: &C,
    merchant_id: &MerchantId,
    new: NewPayout,
    request_id: Option<&str>,
) -> Result<payouts::Model, ServiceError> {
    merchants::Entity::find_by_id(merchant_id.clone())
        .lock_exclusive()
        .one(txn)
        .await?;
    let available = available_balance(txn, merchant_id, &new.currency).await?;
    if new.amount > available {
        return Err(ServiceError::state(
            "insufficient_balance",
            format!(
                "The available {} balance is {} (minor units): succeeded payments, less refunds and payouts. This payout of {} does not fit.",
                new.currency, available, new.amount
            ),
        ));
    }
    let now = Utc::now();
    let payout = payouts::Entity::insert(payouts::ActiveModel {
        id: Set(PayoutId::generate()),
        merchant_id: Set(merchant_id.clone()),
        amount: Set(new.amount),
        currency: Set(new.currency),
        provider: Set(new.provider),
        destination: Set(new.destination.to_json()),
        reference: Set(new.reference),
        metadata: Set((!new.metadata.is_empty()).then(|| json!(new.metadata))),
        status: Set(PayoutStatus::Pending),
        provider_reference: Set(None),
        failure_code: Set(None),
        failure_message: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec_with_returning(txn)
    .await?;
    crate::webhooks::events::record(
        txn,
        merchant_id,
        EventType::PayoutPending,
        None,
        view(&payout),
        request_id,
    )
    .await?;
    Ok(payout)
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
    /// Always `payout`.
    pub object: String,
    pub amount: i64,
    pub currency: String,
    pub provider: String,
    pub destination: PayoutDestination,
    pub reference: Option<String>,
    pub metadata: HashMap<String, String>,
    /// `pending`, `processing`, `succeeded` or `failed` (the last two are final).
    pub status: String,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&payouts::Model> for Payout {
    fn from(p: &payouts::Model) -> Payout {
        let field = |k: &str| p.destination[k].as_str().map(|v| Text(v.to_string()));
        Payout {
            id: p.id.to_string(),
            object: "payout".into(),
            amount: p.amount,
            currency: p.currency.clone(),
            provider: p.provider.to_string(),
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
            status: p.status.to_string(),
            failure_code: p.failure_code.clone(),
            failure_message: p.failure_message.clone(),
            created_at: entity::event::rfc3339(p.created_at),
            updated_at: entity::event::rfc3339(p.updated_at),
        }
    }
}

/// Why a payout failed, when it did.
pub struct Failure<'a> {
    pub code: &'a str,
    pub message: &'a str,
}

/// Moves a payout to `to` if it may go there from where it is (never out of a final state),
/// with its event, in one transaction. `None`: it had moved on already (a late or repeated
/// answer changes nothing).
pub async fn move_to<C: TransactionTrait>(
    db: &C,
    id: &PayoutId,
    to: PayoutStatus,
    provider_reference: Option<&str>,
    failure: Option<Failure<'_>>,
) -> Result<Option<payouts::Model>, DbErr> {
    let from: &[PayoutStatus] = match to {
        PayoutStatus::Pending => &[],
        PayoutStatus::Processing => &[PayoutStatus::Pending],
        PayoutStatus::Succeeded | PayoutStatus::Failed => {
            &[PayoutStatus::Pending, PayoutStatus::Processing]
        }
    };
    let txn = db.begin().await?;
    let mut update = payouts::Entity::update_many()
        .col_expr(payouts::Column::Status, Expr::value(to))
        .col_expr(payouts::Column::UpdatedAt, Expr::value(Utc::now()));
    if let Some(reference) = provider_reference {
        update = update.col_expr(payouts::Column::ProviderReference, Expr::value(reference));
    }
    if let Some(f) = &failure {
        update = update
            .col_expr(payouts::Column::FailureCode, Expr::value(f.code))
            .col_expr(payouts::Column::FailureMessage, Expr::value(f.message));
    }
    let moved = update
        .filter(payouts::Column::Id.eq(id))
        .filter(payouts::Column::Status.is_in(from.iter().copied()))
        .exec_with_returning(&txn)
        .await?;
    let Some(payout) = moved.into_iter().next() else {
        txn.rollback().await?;
        return Ok(None);
    };
    crate::webhooks::events::record(
        &txn,
        &payout.merchant_id,
        EventType::for_payout(to),
        None,
        view(&payout),
        None,
    )
    .await?;
    txn.commit().await?;
    Ok(Some(payout))
}

/// Hands a just-recorded payout to its provider: `processing` once the provider has it,
/// `failed` if it refused (the amount is then available again).
pub async fn send<C: TransactionTrait>(
    db: &C,
    providers: &Providers,
    payout: &payouts::Model,
) -> Result<payouts::Model, DbErr> {
    let sent = match payout.provider {
        Provider::Simulated => Ok(None),
        Provider::Moneroo => match (&providers.moneroo, destination_phone(payout)) {
            (Some(moneroo), Some((phone, operator))) => moneroo
                .start_payout(payout, &phone, &operator)
                .await
                .map(Some),
            (None, _) => Err(crate::providers::ProviderError::NotConfigured),
            (_, None) => Err(crate::providers::ProviderError::Malformed(
                "no mobile money destination".into(),
            )),
        },
        _ => Err(crate::providers::ProviderError::NotConfigured),
    };
    let moved = match sent {
        Ok(reference) => {
            move_to(
                db,
                &payout.id,
                PayoutStatus::Processing,
                reference.as_deref(),
                None,
            )
            .await?
        }
        Err(e) => {
            let message = e.to_string();
            move_to(
                db,
                &payout.id,
                PayoutStatus::Failed,
                None,
                Some(Failure {
                    code: "provider_error",
                    message: &message,
                }),
            )
            .await?
        }
    };
    Ok(moved.unwrap_or_else(|| payout.clone()))
}

fn destination_phone(p: &payouts::Model) -> Option<(String, String)> {
    (p.destination["type"] == "mobile_money").then(|| {
        (
            p.destination["phone"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            p.destination["operator"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    })
}

/// Asks the provider where a processing payout stands and applies a final answer.
pub async fn refresh<C: TransactionTrait>(
    db: &C,
    providers: &Providers,
    payout: &payouts::Model,
) -> Result<Option<payouts::Model>, ServiceError> {
    if payout.status.is_final() {
        return Ok(None);
    }
    let (Provider::Moneroo, Some(moneroo), Some(reference)) = (
        payout.provider,
        providers.moneroo.as_ref(),
        payout.provider_reference.as_deref(),
    ) else {
        return Ok(None);
    };
    let status = moneroo
        .payout_status(payout, reference)
        .await
        .map_err(|e| ServiceError::Provider(e.to_string()))?;
    Ok(match status {
        Some(to @ PayoutStatus::Succeeded) => move_to(db, &payout.id, to, None, None).await?,
        Some(to @ PayoutStatus::Failed) => {
            move_to(
                db,
                &payout.id,
                to,
                None,
                Some(Failure {
                    code: "payout_failed",
                    message: "The provider reported the payout failed.",
                }),
            )
            .await?
        }
        _ => None,
    })
}

pub async fn get<C: ConnectionTrait>(
    db: &C,
    merchant_id: &MerchantId,
    id: &PayoutId,
) -> Result<Option<payouts::Model>, DbErr> {
    payouts::Entity::find_by_id(id.clone())
        .filter(payouts::Column::MerchantId.eq(merchant_id))
        .one(db)
        .await
}

pub async fn by_provider_reference<C: ConnectionTrait>(
    db: &C,
    provider: Provider,
    reference: &str,
) -> Result<Option<payouts::Model>, DbErr> {
    payouts::Entity::find()
        .filter(payouts::Column::Provider.eq(provider))
        .filter(payouts::Column::ProviderReference.eq(reference))
        .one(db)
        .await
}

pub async fn list<C: ConnectionTrait>(
    db: &C,
    merchant_id: &MerchantId,
    page: &crate::pagination::Page,
) -> Result<(Vec<payouts::Model>, bool), DbErr> {
    let select = payouts::Entity::find().filter(payouts::Column::MerchantId.eq(merchant_id));
    page.fetch(db, select, payouts::Column::Id).await
}

/// Open Moneroo payouts the provider has had for at least `age`: the poller re-queries them.
pub async fn due_for_requery<C: ConnectionTrait>(
    db: &C,
    age: std::time::Duration,
) -> Result<Vec<payouts::Model>, DbErr> {
    let before = Utc::now() - chrono::Duration::from_std(age).unwrap_or_default();
    payouts::Entity::find()
        .filter(payouts::Column::Provider.eq(Provider::Moneroo))
        .filter(payouts::Column::Status.eq(PayoutStatus::Processing))
        .filter(payouts::Column::UpdatedAt.lte(before))
        .limit(50)
        .all(db)
        .await
}
