//! The ledger: every movement of a merchant's money, double-entry.
//!
//! A movement is a balance transaction (`txn_…`, what the merchant sees) with postings to
//! accounts that always sum to zero: the merchant's own `available` and `pending`, and the
//! counter-account the money came from or went to (`customers`, `refunds`, `payouts`,
//! `adjustments`). Each is written in the transaction of the state change that caused it (a
//! payment succeeding, a refund or payout reserved, one of those failing), and moves the
//! merchant's stored balance for its mode and currency by the same amounts.
//!
//! Refunds and payouts *reserve*: their amount leaves `available` when they are made, by one
//! conditional update of the balance row (`available + delta >= 0`), which is the one lock per
//! (merchant, mode, currency): concurrent reservations are decided one at a time and the
//! balance never goes negative. Money the provider already moved without asking us (a refund
//! made in Stripe's dashboard) is recorded as it is, even if it overdraws.
//!
//! A payment's funds are `pending` until `available_on` (`PAYRAIL_FUNDS_AVAILABLE_AFTER`
//! after it succeeded; 0 by default, so at once), then [`release_matured`] moves them.
//! [`check`] verifies the invariants.

pub mod check;
pub mod objects;

use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::ids::{BalanceTransactionId, Scope};
use entity::status::{BalanceTransactionStatus, BalanceTransactionType, LedgerAccount};
use entity::{balance_transactions, balances, ledger_entries, payments, payouts, refunds};
use sea_orm::sea_query::{Expr, ExprTrait as _, OnConflict};
use sea_orm::{
    ActiveValue::NotSet, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, TransactionSession, TransactionTrait,
};

use crate::core::error::{ServiceError, ValidationError};
use crate::core::pagination::{CreatedRange, Page};

/// When a payment's funds become available.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FundsPolicy {
    /// `PAYRAIL_FUNDS_AVAILABLE_AFTER`: how long after a payment succeeds its funds are
    /// `pending` before they can be refunded or paid out.
    pub available_after: Duration,
}

/// What a posting may do to the merchant's `available` balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Overdraft {
    /// A request (a refund, a payout): refused if it would make `available` negative.
    Refuse,
    /// Money that already moved (a provider-side refund, an adjustment): recorded as it is.
    Allow,
}

/// Why a reservation was refused.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("the available {currency} balance is {available}; {requested} does not fit")]
    Insufficient {
        currency: String,
        available: i64,
        requested: i64,
    },
    #[error(transparent)]
    Db(#[from] DbErr),
}

impl LedgerError {
    /// For postings that cannot be refused (they allow overdraft): only the database fails.
    pub fn into_db(self) -> DbErr {
        match self {
            LedgerError::Db(e) => e,
            other => DbErr::Custom(other.to_string()),
        }
    }
}

impl From<LedgerError> for ServiceError {
    fn from(e: LedgerError) -> ServiceError {
        match e {
            LedgerError::Insufficient {
                currency,
                available,
                requested,
            } => ValidationError::new(
                "amount",
                "balance_insufficient",
                format!(
                    "The available {currency} balance is {available} (minor units); {requested} does not fit. Nothing was changed."
                ),
            )
            .into(),
            LedgerError::Db(e) => e.into(),
        }
    }
}

/// A balance transaction about to be posted.
struct Movement<'a> {
    id: BalanceTransactionId,
    scope: &'a Scope,
    currency: &'a str,
    kind: BalanceTransactionType,
    source_id: Option<&'a str>,
    description: String,
    available_on: DateTime<Utc>,
    postings: Vec<(LedgerAccount, i64)>,
    overdraft: Overdraft,
}

/// The id of the transaction a payment, refund or payout made first: its own id's suffix under
/// `txn_`, so it is found without a lookup and posting it twice is a duplicate key.
pub fn transaction_id_of(source_id: &str) -> BalanceTransactionId {
    let suffix = source_id.split_once('_').map_or(source_id, |(_, s)| s);
    BalanceTransactionId::from_trusted(format!("txn_{suffix}"))
}

/// A payment succeeded: its amount comes in from the customer, `pending` until it is
/// available (at once with no delay). Posted once; a second call changes nothing.
pub async fn charge<C: ConnectionTrait>(
    txn: &C,
    payment: &payments::Model,
    funds: FundsPolicy,
) -> Result<(), LedgerError> {
    let now = Utc::now();
    let delay = chrono::Duration::from_std(funds.available_after).unwrap_or_default();
    let merchant_side = if delay.is_zero() {
        LedgerAccount::Available
    } else {
        LedgerAccount::Pending
    };
    let id = transaction_id_of(&payment.id);
    if balance_transactions::Entity::find_by_id(id.clone())
        .one(txn)
        .await?
        .is_some()
    {
        return Ok(());
    }
    post(
        txn,
        Movement {
            id,
            scope: &payment.scope(),
            currency: &payment.currency,
            kind: BalanceTransactionType::Charge,
            source_id: Some(&payment.id),
            description: format!("Payment {}", payment.id),
            available_on: now + delay,
            postings: vec![
                (LedgerAccount::Customers, -payment.amount),
                (merchant_side, payment.amount),
            ],
            overdraft: Overdraft::Allow,
        },
    )
    .await
}

/// A refund is made: its amount leaves `available` now, or it is refused.
pub async fn reserve_refund<C: ConnectionTrait>(
    txn: &C,
    refund: &refunds::Model,
    currency: &str,
) -> Result<(), LedgerError> {
    post(
        txn,
        Movement {
            id: transaction_id_of(&refund.id),
            scope: &refund.scope(),
            currency,
            kind: BalanceTransactionType::Refund,
            source_id: Some(&refund.id),
            description: format!("Refund {} of payment {}", refund.id, refund.payment_id),
            available_on: Utc::now(),
            postings: vec![
                (LedgerAccount::Available, -refund.amount),
                (LedgerAccount::Refunds, refund.amount),
            ],
            overdraft: Overdraft::Refuse,
        },
    )
    .await
}

/// A refund failed: its reserved amount is available again.
pub async fn release_refund<C: ConnectionTrait>(
    txn: &C,
    refund: &refunds::Model,
    currency: &str,
) -> Result<(), LedgerError> {
    post(
        txn,
        Movement {
            id: BalanceTransactionId::generate(),
            scope: &refund.scope(),
            currency,
            kind: BalanceTransactionType::RefundFailure,
            source_id: Some(&refund.id),
            description: format!("Refund {} failed", refund.id),
            available_on: Utc::now(),
            postings: vec![
                (LedgerAccount::Refunds, -refund.amount),
                (LedgerAccount::Available, refund.amount),
            ],
            overdraft: Overdraft::Allow,
        },
    )
    .await
}

/// The provider reports more refunded on a payment than the refunds made here (one made in
/// its own dashboard): the difference left, whatever the balance.
pub async fn refunded_at_provider<C: ConnectionTrait>(
    txn: &C,
    payment: &payments::Model,
    amount: i64,
) -> Result<(), LedgerError> {
    post(
        txn,
        Movement {
            id: BalanceTransactionId::generate(),
            scope: &payment.scope(),
            currency: &payment.currency,
            kind: BalanceTransactionType::Refund,
            source_id: Some(&payment.id),
            description: format!(
                "Refund of payment {} made at {}",
                payment.id, payment.provider
            ),
            available_on: Utc::now(),
            postings: vec![
                (LedgerAccount::Available, -amount),
                (LedgerAccount::Refunds, amount),
            ],
            overdraft: Overdraft::Allow,
        },
    )
    .await
}

/// What the ledger counts as refunded at the provider for a payment beyond its own refunds.
pub async fn provider_side_refunds<C: ConnectionTrait>(
    db: &C,
    payment: &payments::Model,
) -> Result<i64, DbErr> {
    let total: Option<i64> = balance_transactions::Entity::find()
        .select_only()
        .column_as(
            Expr::cust("CAST(COALESCE(SUM(-amount), 0) AS BIGINT)"),
            "total",
        )
        .filter(balance_transactions::Column::SourceId.eq(payment.id.as_str()))
        .filter(balance_transactions::Column::Kind.eq(BalanceTransactionType::Refund))
        .into_tuple()
        .one(db)
        .await?;
    Ok(total.unwrap_or(0))
}

/// A payout is made: its amount leaves `available` now, or it is refused.
pub async fn reserve_payout<C: ConnectionTrait>(
    txn: &C,
    payout: &payouts::Model,
) -> Result<(), LedgerError> {
    post(
        txn,
        Movement {
            id: transaction_id_of(&payout.id),
            scope: &payout.scope(),
            currency: &payout.currency,
            kind: BalanceTransactionType::Payout,
            source_id: Some(&payout.id),
            description: format!("Payout {}", payout.id),
            available_on: Utc::now(),
            postings: vec![
                (LedgerAccount::Available, -payout.amount),
                (LedgerAccount::Payouts, payout.amount),
            ],
            overdraft: Overdraft::Refuse,
        },
    )
    .await
}

/// A payout failed: its amount is available again.
pub async fn release_payout<C: ConnectionTrait>(
    txn: &C,
    payout: &payouts::Model,
) -> Result<(), LedgerError> {
    post(
        txn,
        Movement {
            id: BalanceTransactionId::generate(),
            scope: &payout.scope(),
            currency: &payout.currency,
            kind: BalanceTransactionType::PayoutFailure,
            source_id: Some(&payout.id),
            description: format!("Payout {} failed", payout.id),
            available_on: Utc::now(),
            postings: vec![
                (LedgerAccount::Payouts, -payout.amount),
                (LedgerAccount::Available, payout.amount),
            ],
            overdraft: Overdraft::Allow,
        },
    )
    .await
}

/// An operator's correction of a merchant's available balance (positive in, negative out),
/// against the `adjustments` account.
pub async fn adjust<C: ConnectionTrait>(
    txn: &C,
    scope: &Scope,
    currency: &str,
    amount: i64,
    description: &str,
) -> Result<balance_transactions::Model, LedgerError> {
    let id = BalanceTransactionId::generate();
    post(
        txn,
        Movement {
            id: id.clone(),
            scope,
            currency,
            kind: BalanceTransactionType::Adjustment,
            source_id: None,
            description: description.to_string(),
            available_on: Utc::now(),
            postings: vec![
                (LedgerAccount::Available, amount),
                (LedgerAccount::Adjustments, -amount),
            ],
            overdraft: Overdraft::Allow,
        },
    )
    .await?;
    balance_transactions::Entity::find_by_id(id)
        .one(txn)
        .await?
        .ok_or_else(|| LedgerError::Db(DbErr::RecordNotFound("adjustment".into())))
}

/// Writes a movement: its balance transaction, its entries, and its effect on the stored
/// balance (first, since that is where a reservation is refused).
async fn post<C: ConnectionTrait>(txn: &C, m: Movement<'_>) -> Result<(), LedgerError> {
    let total: i64 = m.postings.iter().map(|(_, a)| a).sum();
    if total != 0 {
        return Err(DbErr::Custom(format!(
            "unbalanced ledger transaction {} ({:?}): its postings sum to {total}",
            m.id, m.kind
        ))
        .into());
    }
    let side = |account: LedgerAccount| -> i64 {
        m.postings
            .iter()
            .filter(|(a, _)| *a == account)
            .map(|(_, amount)| amount)
            .sum()
    };
    let (available, pending) = (side(LedgerAccount::Available), side(LedgerAccount::Pending));
    move_balance(txn, m.scope, m.currency, available, pending, m.overdraft).await?;
    let now = Utc::now();
    balance_transactions::Entity::insert(balance_transactions::ActiveModel {
        id: Set(m.id.clone()),
        merchant_id: Set(m.scope.merchant_id.clone()),
        livemode: Set(m.scope.livemode),
        currency: Set(m.currency.to_string()),
        kind: Set(m.kind),
        source_id: Set(m.source_id.map(str::to_string)),
        amount: Set(available + pending),
        status: Set(if pending != 0 && m.available_on > now {
            BalanceTransactionStatus::Pending
        } else {
            BalanceTransactionStatus::Available
        }),
        available_on: Set(m.available_on),
        description: Set(Some(m.description)),
        created_at: Set(now),
    })
    .exec_without_returning(txn)
    .await?;
    entries(txn, &m.id, m.scope, m.currency, &m.postings).await?;
    Ok(())
}

async fn entries<C: ConnectionTrait>(
    txn: &C,
    transaction_id: &BalanceTransactionId,
    scope: &Scope,
    currency: &str,
    postings: &[(LedgerAccount, i64)],
) -> Result<(), DbErr> {
    let now = Utc::now();
    let rows = postings
        .iter()
        .filter(|(_, amount)| *amount != 0)
        .map(|(account, amount)| ledger_entries::ActiveModel {
            id: NotSet,
            transaction_id: Set(transaction_id.clone()),
            merchant_id: Set(scope.merchant_id.clone()),
            livemode: Set(scope.livemode),
            currency: Set(currency.to_string()),
            account: Set(*account),
            amount: Set(*amount),
            created_at: Set(now),
        });
    ledger_entries::Entity::insert_many(rows)
        .exec_without_returning(txn)
        .await?;
    Ok(())
}

/// Moves the stored balance. With [`Overdraft::Refuse`] and money going out of `available`,
/// the update only happens if it stays non-negative: one statement, so the row lock it takes
/// decides concurrent reservations one at a time.
async fn move_balance<C: ConnectionTrait>(
    txn: &C,
    scope: &Scope,
    currency: &str,
    available: i64,
    pending: i64,
    overdraft: Overdraft,
) -> Result<(), LedgerError> {
    use balances::Column as B;
    balances::Entity::insert(balances::ActiveModel {
        merchant_id: Set(scope.merchant_id.clone()),
        livemode: Set(scope.livemode),
        currency: Set(currency.to_string()),
        available: Set(0),
        pending: Set(0),
        updated_at: Set(Utc::now()),
    })
    .on_conflict(
        OnConflict::columns([B::MerchantId, B::Livemode, B::Currency])
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(txn)
    .await?;
    let mut update = balances::Entity::update_many()
        .col_expr(B::Available, Expr::col(B::Available).add(available))
        .col_expr(B::Pending, Expr::col(B::Pending).add(pending))
        .col_expr(B::UpdatedAt, Expr::value(Utc::now()))
        .filter(scope.of::<balances::Entity>())
        .filter(B::Currency.eq(currency));
    let guarded = overdraft == Overdraft::Refuse && available < 0;
    if guarded {
        update = update.filter(Expr::col(B::Available).add(available).gte(0));
    }
    let moved = update.exec(txn).await?;
    if moved.rows_affected == 1 {
        return Ok(());
    }
    let now_available = balance_of(txn, scope, currency)
        .await?
        .map_or(0, |b| b.available);
    Err(LedgerError::Insufficient {
        currency: currency.to_string(),
        available: now_available,
        requested: -available,
    })
}

async fn balance_of<C: ConnectionTrait>(
    db: &C,
    scope: &Scope,
    currency: &str,
) -> Result<Option<balances::Model>, DbErr> {
    balances::Entity::find()
        .filter(scope.of::<balances::Entity>())
        .filter(balances::Column::Currency.eq(currency))
        .one(db)
        .await
}

/// The merchant's balances in this mode, one per currency it ever had money in.
pub async fn balances<C: ConnectionTrait>(
    db: &C,
    scope: &Scope,
) -> Result<Vec<balances::Model>, DbErr> {
    balances::Entity::find()
        .filter(scope.of::<balances::Entity>())
        .order_by_asc(balances::Column::Currency)
        .all(db)
        .await
}

/// What a list of balance transactions may be narrowed to.
#[derive(Debug, Default)]
pub struct Filter {
    pub kind: Option<BalanceTransactionType>,
    /// The payment, refund or payout that caused them.
    pub source: Option<String>,
    pub currency: Option<String>,
    pub created: CreatedRange,
}

pub async fn list<C: ConnectionTrait>(
    db: &C,
    scope: &Scope,
    filter: &Filter,
    page: &Page,
) -> Result<(Vec<balance_transactions::Model>, bool), DbErr> {
    use balance_transactions::Column as T;
    let mut select =
        balance_transactions::Entity::find().filter(scope.of::<balance_transactions::Entity>());
    if let Some(kind) = filter.kind {
        select = select.filter(T::Kind.eq(kind));
    }
    if let Some(source) = &filter.source {
        select = select.filter(T::SourceId.eq(source.as_str()));
    }
    if let Some(currency) = &filter.currency {
        select = select.filter(T::Currency.eq(currency.as_str()));
    }
    let select = filter.created.apply(select, T::CreatedAt);
    page.fetch(db, select, T::Id).await
}

pub async fn get<C: ConnectionTrait>(
    db: &C,
    scope: &Scope,
    id: &BalanceTransactionId,
) -> Result<Option<balance_transactions::Model>, DbErr> {
    balance_transactions::Entity::find_by_id(id.clone())
        .filter(scope.of::<balance_transactions::Entity>())
        .one(db)
        .await
}

/// Makes the funds of pending transactions whose `available_on` has passed available, a
/// batch at a time; returns how many were released. Each release is its own transaction, and
/// claims its row by moving it out of `pending`, so two gateways never release one twice.
pub async fn release_matured<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    limit: u64,
) -> Result<usize, DbErr> {
    use balance_transactions::Column as T;
    let due = balance_transactions::Entity::find()
        .filter(T::Status.eq(BalanceTransactionStatus::Pending))
        .filter(T::AvailableOn.lte(Utc::now()))
        .order_by_asc(T::AvailableOn)
        .limit(limit)
        .all(db)
        .await?;
    let mut released = 0;
    for t in due {
        let txn = db.begin().await?;
        let claimed = balance_transactions::Entity::update_many()
            .col_expr(T::Status, Expr::value(BalanceTransactionStatus::Available))
            .filter(T::Id.eq(t.id.as_str()))
            .filter(T::Status.eq(BalanceTransactionStatus::Pending))
            .exec(&txn)
            .await?;
        if claimed.rows_affected != 1 {
            continue;
        }
        let scope = t.scope();
        let postings = [
            (LedgerAccount::Pending, -t.amount),
            (LedgerAccount::Available, t.amount),
        ];
        move_balance(
            &txn,
            &scope,
            &t.currency,
            t.amount,
            -t.amount,
            Overdraft::Allow,
        )
        .await
        .map_err(LedgerError::into_db)?;
        entries(&txn, &t.id, &scope, &t.currency, &postings).await?;
        txn.commit().await?;
        released += 1;
    }
    Ok(released)
}
