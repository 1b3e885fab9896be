//! Reconciliation: Payrail's ledger against what each provider reports, daily.
//!
//! A run looks at the objects of the last window (`PAYRAIL_RECONCILE_WINDOW`) whose provider's
//! credentials are of their mode, and compares:
//! - **Stripe**: its balance transactions (charges and refunds, by PaymentIntent) with the
//!   payments Payrail counts succeeded and what it counts refunded on them;
//! - **Moneroo**: each payment's and each payout's status, re-queried (`verify`);
//! - **eBilling**: each bill's state;
//! - and every payment flagged `requires_reconciliation` (a success reported after Payrail
//!   called the payment over), whatever its provider.
//!
//! Each difference is a reconciliation item (`rec_…`), one per kind and object: seen again on
//! the next run it stays open (its `last_seen_at` moves); gone, it is `matched`; an operator
//! settles the rest (`resolved`, with a note). A run is claimed per schedule slot, so several
//! gateways firing the same schedule make one run. An object whose provider did not answer is
//! left as it was (neither found nor matched) for the next run.

pub mod objects;

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::ids::{ReconciliationItemId, Scope};
use entity::payment_status::PaymentStatus;
use entity::status::{PayoutStatus, Provider, ReconciliationKind, ReconciliationStatus};
use entity::{payments, payouts, reconciliation_items};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    PaginatorTrait, QueryFilter, QuerySelect,
};

use crate::core::pagination::Page;
use crate::providers::Providers;

/// How many objects of one kind a run looks at, at most (newest first): a bound on the
/// provider calls one run makes.
const MAX_OBJECTS: u64 = 5000;

/// A final status reported by a provider is only a difference for a payment or payout that
/// has been open here this long (the webhook or the poller usually settles it first).
const OPEN_GRACE: chrono::Duration = chrono::Duration::hours(1);

/// One difference found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub scope: Scope,
    pub provider: Provider,
    pub kind: ReconciliationKind,
    pub object_id: String,
    pub provider_reference: Option<String>,
    pub expected: String,
    pub reported: String,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, poem_openapi::Object)]
pub struct Summary {
    /// Objects compared with their provider's report.
    pub checked: u64,
    /// Differences found by this run.
    pub found: u64,
    /// Open items earlier runs found that are gone now.
    pub matched: u64,
    /// Objects left for the next run because their provider did not answer.
    pub unanswered: u64,
    /// Items open after the run, in all.
    pub open: u64,
}

/// What a run compares: the findings and the objects it could compare.
#[derive(Default)]
struct Run {
    findings: Vec<Finding>,
    checked: HashSet<String>,
    unanswered: u64,
}

impl Run {
    fn found(&mut self, f: Finding) {
        self.findings.push(f);
    }
}

fn finding(
    p: &payments::Model,
    kind: ReconciliationKind,
    expected: String,
    reported: String,
) -> Finding {
    Finding {
        scope: p.scope(),
        provider: p.provider,
        kind,
        object_id: p.id.to_string(),
        provider_reference: p.provider_reference.clone(),
        expected,
        reported,
    }
}

/// A payment that took money here.
fn took_money(status: PaymentStatus) -> bool {
    matches!(status, PaymentStatus::Succeeded | PaymentStatus::Refunded)
}

/// Runs once for `slot` (a schedule's firing; `None` for an operator's run, which always
/// runs): `None` when another gateway has this slot already.
pub async fn run_once(
    db: &DatabaseConnection,
    providers: &Providers,
    window: Duration,
    slot: Option<&str>,
) -> Result<Option<Summary>, DbErr> {
    let now = Utc::now();
    let slot = match slot {
        Some(s) => s.to_string(),
        None => format!("manual-{}", uuid::Uuid::now_v7().simple()),
    };
    let claimed = entity_runs::insert(db, &slot, now).await?;
    if !claimed {
        return Ok(None);
    }
    let since = now - chrono::Duration::from_std(window).unwrap_or(chrono::Duration::days(3));
    let mut run = Run::default();
    stripe(db, providers, since, &mut run).await?;
    moneroo_and_ebilling_payments(db, providers, since, now, &mut run).await?;
    moneroo_payouts(db, providers, since, now, &mut run).await?;
    late_successes(db, &mut run).await?;
    let summary = record(db, run).await?;
    entity_runs::finish(db, &slot, &summary).await?;
    Ok(Some(summary))
}

/// Payments of `provider` created since `since` whose mode is its credentials' mode.
async fn payments_of(
    db: &DatabaseConnection,
    providers: &Providers,
    provider: Provider,
    since: DateTime<Utc>,
) -> Result<Vec<payments::Model>, DbErr> {
    let Some(live) = providers.is_live(provider) else {
        return Ok(Vec::new());
    };
    payments::Entity::find()
        .filter(payments::Column::Provider.eq(provider))
        .filter(payments::Column::Livemode.eq(live))
        .filter(payments::Column::CreatedAt.gte(since))
        .filter(payments::Column::ProviderReference.is_not_null())
        .limit(MAX_OBJECTS)
        .all(db)
        .await
}

async fn stripe(
    db: &DatabaseConnection,
    providers: &Providers,
    since: DateTime<Utc>,
    run: &mut Run,
) -> Result<(), DbErr> {
    let Some(stripe) = providers.stripe.as_ref() else {
        return Ok(());
    };
    let ours = payments_of(db, providers, Provider::Stripe, since).await?;
    if ours.is_empty() {
        return Ok(());
    }
    let report = match stripe.report_since(since).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "reconciliation: Stripe's report is unavailable; the next run retries");
            run.unanswered += ours.len() as u64;
            return Ok(());
        }
    };
    for p in ours {
        let currency = entity::money::Currency::parse(&p.currency);
        let ours_in = |stripe_amount: i64| {
            currency
                .and_then(|c| crate::providers::stripe::from_stripe_amount(stripe_amount, c))
                .unwrap_or(stripe_amount)
        };
        let moved = p
            .provider_reference
            .as_deref()
            .and_then(|pi| report.get(pi))
            .copied()
            .unwrap_or_default();
        let (charged, refunded) = (ours_in(moved.charged), ours_in(moved.refunded));
        run.checked.insert(p.id.to_string());
        if took_money(p.status) {
            if charged == 0 {
                run.found(finding(
                    &p,
                    ReconciliationKind::MissingAtProvider,
                    format!("{} {}: {}", p.status, p.amount, p.currency),
                    "no charge at Stripe".into(),
                ));
                continue;
            }
            if charged != p.amount {
                run.found(finding(
                    &p,
                    ReconciliationKind::AmountMismatch,
                    format!("charged {} {}", p.amount, p.currency),
                    format!("charged {charged} {}", p.currency),
                ));
            }
            if refunded != p.amount_refunded {
                run.found(finding(
                    &p,
                    ReconciliationKind::RefundMismatch,
                    format!("refunded {} {}", p.amount_refunded, p.currency),
                    format!("refunded {refunded} {}", p.currency),
                ));
            }
        } else if charged > 0 && !p.requires_reconciliation {
            run.found(finding(
                &p,
                ReconciliationKind::StatusMismatch,
                p.status.to_string(),
                format!("charged {charged} {}", p.currency),
            ));
        }
    }
    Ok(())
}

/// Moneroo's payments and eBilling's bills, re-queried one by one: a payment that took money
/// here must have succeeded there, and one called over here must not have.
async fn moneroo_and_ebilling_payments(
    db: &DatabaseConnection,
    providers: &Providers,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
    run: &mut Run,
) -> Result<(), DbErr> {
    for provider in [Provider::Moneroo, Provider::Ebilling] {
        for p in payments_of(db, providers, provider, since).await? {
            let open_here = !p.status.is_final();
            if open_here && now - p.created_at < OPEN_GRACE {
                continue;
            }
            let remote = match providers.status(&p).await {
                Ok(r) => r.status,
                Err(e) => {
                    tracing::warn!(payment_id = %p.id, error = %e, "reconciliation: no answer; the next run retries");
                    run.unanswered += 1;
                    continue;
                }
            };
            run.checked.insert(p.id.to_string());
            let succeeded_there = remote == Some(PaymentStatus::Succeeded);
            let agrees = match p.status {
                s if took_money(s) => succeeded_there,
                PaymentStatus::Failed | PaymentStatus::Cancelled => {
                    !succeeded_there || p.requires_reconciliation
                }
                // Open here: anything but a final answer there agrees.
                _ => remote.is_none_or(|r| !r.is_final()),
            };
            if !agrees {
                run.found(finding(
                    &p,
                    ReconciliationKind::StatusMismatch,
                    p.status.to_string(),
                    remote.map_or_else(|| "open".to_string(), |r| r.to_string()),
                ));
            }
        }
    }
    Ok(())
}

/// Moneroo's payouts that reached it, re-queried: a payout paid here must be paid there, and
/// one failed here (its money back in the balance) must not be.
async fn moneroo_payouts(
    db: &DatabaseConnection,
    providers: &Providers,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
    run: &mut Run,
) -> Result<(), DbErr> {
    let (Some(moneroo), Some(live)) = (
        providers.moneroo.as_ref(),
        providers.is_live(Provider::Moneroo),
    ) else {
        return Ok(());
    };
    let ours = payouts::Entity::find()
        .filter(payouts::Column::Provider.eq(Provider::Moneroo))
        .filter(payouts::Column::Livemode.eq(live))
        .filter(payouts::Column::CreatedAt.gte(since))
        .filter(payouts::Column::ProviderReference.is_not_null())
        .limit(MAX_OBJECTS)
        .all(db)
        .await?;
    for po in ours {
        if !po.status.is_final() && now - po.created_at < OPEN_GRACE {
            continue;
        }
        let Some(reference) = po.provider_reference.as_deref() else {
            continue;
        };
        let remote = match moneroo.payout_status(&po, reference).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(payout_id = %po.id, error = %e, "reconciliation: no answer; the next run retries");
                run.unanswered += 1;
                continue;
            }
        };
        run.checked.insert(po.id.to_string());
        let agrees = match po.status {
            PayoutStatus::Succeeded => remote == Some(PayoutStatus::Succeeded),
            PayoutStatus::Failed => remote != Some(PayoutStatus::Succeeded),
            _ => remote.is_none_or(|r| !r.is_final()),
        };
        if !agrees {
            run.found(Finding {
                scope: po.scope(),
                provider: po.provider,
                kind: ReconciliationKind::StatusMismatch,
                object_id: po.id.to_string(),
                provider_reference: po.provider_reference.clone(),
                expected: po.status.to_string(),
                reported: remote.map_or_else(|| "open".to_string(), |r| r.to_string()),
            });
        }
    }
    Ok(())
}

/// Payments a provider reported succeeded after they were called over here.
async fn late_successes(db: &DatabaseConnection, run: &mut Run) -> Result<(), DbErr> {
    let flagged = payments::Entity::find()
        .filter(payments::Column::RequiresReconciliation.eq(true))
        .limit(MAX_OBJECTS)
        .all(db)
        .await?;
    for p in flagged {
        run.found(finding(
            &p,
            ReconciliationKind::LateSuccess,
            p.status.to_string(),
            "succeeded".into(),
        ));
    }
    // Every late-success item is checked: one whose payment is no longer flagged matched.
    let items: Vec<String> = reconciliation_items::Entity::find()
        .select_only()
        .column(reconciliation_items::Column::ObjectId)
        .filter(reconciliation_items::Column::Kind.eq(ReconciliationKind::LateSuccess))
        .filter(reconciliation_items::Column::Status.eq(ReconciliationStatus::Open))
        .into_tuple()
        .all(db)
        .await?;
    run.checked.extend(items);
    Ok(())
}

/// Writes the findings (a new item, or the same one seen again) and marks matched the open
/// items of objects compared this time without a difference of that kind.
async fn record(db: &DatabaseConnection, run: Run) -> Result<Summary, DbErr> {
    use reconciliation_items::Column as C;
    let now = Utc::now();
    let found: HashSet<(String, ReconciliationKind)> = run
        .findings
        .iter()
        .map(|f| (f.object_id.clone(), f.kind))
        .collect();
    for f in &run.findings {
        reconciliation_items::Entity::insert(reconciliation_items::ActiveModel {
            id: Set(ReconciliationItemId::generate()),
            merchant_id: Set(f.scope.merchant_id.clone()),
            livemode: Set(f.scope.livemode),
            provider: Set(f.provider),
            kind: Set(f.kind),
            object_id: Set(f.object_id.clone()),
            provider_reference: Set(f.provider_reference.clone()),
            expected: Set(f.expected.clone()),
            reported: Set(f.reported.clone()),
            status: Set(ReconciliationStatus::Open),
            resolution: Set(None),
            first_seen_at: Set(now),
            last_seen_at: Set(now),
            resolved_at: Set(None),
        })
        .on_conflict(
            // Seen again: what it says now, and open again unless an operator settled it.
            OnConflict::columns([C::Kind, C::ObjectId])
                .update_columns([C::Expected, C::Reported, C::LastSeenAt])
                .value(
                    C::Status,
                    Expr::cust(
                        "CASE WHEN reconciliation_items.status = 'resolved' THEN 'resolved' ELSE 'open' END",
                    ),
                )
                .value(
                    C::ResolvedAt,
                    Expr::cust(
                        "CASE WHEN reconciliation_items.status = 'resolved' THEN reconciliation_items.resolved_at ELSE NULL END",
                    ),
                )
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    }
    let open: Vec<reconciliation_items::Model> = reconciliation_items::Entity::find()
        .filter(C::Status.eq(ReconciliationStatus::Open))
        .all(db)
        .await?;
    let mut matched = 0;
    for item in open {
        if run.checked.contains(&item.object_id)
            && !found.contains(&(item.object_id.clone(), item.kind))
        {
            reconciliation_items::Entity::update_many()
                .col_expr(C::Status, Expr::value(ReconciliationStatus::Matched))
                .col_expr(C::ResolvedAt, Expr::value(now))
                .filter(C::Id.eq(item.id.as_str()))
                .filter(C::Status.eq(ReconciliationStatus::Open))
                .exec(db)
                .await?;
            matched += 1;
        }
    }
    Ok(Summary {
        checked: run.checked.len() as u64,
        found: run.findings.len() as u64,
        matched,
        unanswered: run.unanswered,
        open: open_count(db).await?,
    })
}

/// Items still open, across merchants (the `reconciliation_items_open` gauge).
pub async fn open_count<C: ConnectionTrait>(db: &C) -> Result<u64, DbErr> {
    reconciliation_items::Entity::find()
        .filter(reconciliation_items::Column::Status.eq(ReconciliationStatus::Open))
        .count(db)
        .await
}

/// A list's narrowing: a status and, for operators, a provider.
#[derive(Debug, Default)]
pub struct Filter {
    pub status: Option<ReconciliationStatus>,
    pub provider: Option<Provider>,
}

/// Items of one merchant and mode (`Some`), or of everyone (`None`: operators), newest first.
pub async fn list<C: ConnectionTrait>(
    db: &C,
    scope: Option<&Scope>,
    filter: &Filter,
    page: &Page,
) -> Result<(Vec<reconciliation_items::Model>, bool), DbErr> {
    use reconciliation_items::Column as C;
    let mut select = reconciliation_items::Entity::find();
    if let Some(scope) = scope {
        select = select.filter(scope.of::<reconciliation_items::Entity>());
    }
    if let Some(status) = filter.status {
        select = select.filter(C::Status.eq(status));
    }
    if let Some(provider) = filter.provider {
        select = select.filter(C::Provider.eq(provider));
    }
    page.fetch(db, select, C::Id).await
}

/// An operator settles an item (whatever its state), with a note of what was done.
pub async fn resolve<C: ConnectionTrait>(
    db: &C,
    id: &ReconciliationItemId,
    note: &str,
) -> Result<Option<reconciliation_items::Model>, DbErr> {
    use reconciliation_items::Column as C;
    let updated = reconciliation_items::Entity::update_many()
        .col_expr(C::Status, Expr::value(ReconciliationStatus::Resolved))
        .col_expr(C::Resolution, Expr::value(note))
        .col_expr(C::ResolvedAt, Expr::value(Utc::now()))
        .filter(C::Id.eq(id.as_str()))
        .exec_with_returning(db)
        .await?;
    Ok(updated.into_iter().next())
}

/// The runs table: one row per slot, claimed by the first gateway to insert it.
mod entity_runs {
    use chrono::{DateTime, Utc};
    use sea_orm::{ConnectionTrait, DbErr, Statement};

    pub async fn insert<C: ConnectionTrait>(
        db: &C,
        slot: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, DbErr> {
        let backend = db.get_database_backend();
        let done = db
            .execute_raw(Statement::from_sql_and_values(
                backend,
                "INSERT INTO reconciliation_runs (slot, started_at) VALUES ($1, $2) ON CONFLICT (slot) DO NOTHING",
                [slot.into(), now.into()],
            ))
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn finish<C: ConnectionTrait>(
        db: &C,
        slot: &str,
        summary: &super::Summary,
    ) -> Result<(), DbErr> {
        let backend = db.get_database_backend();
        db.execute_raw(Statement::from_sql_and_values(
            backend,
            "UPDATE reconciliation_runs SET finished_at = $1, checked = $2, open_items = $3 WHERE slot = $4",
            [
                Utc::now().into(),
                i64::try_from(summary.checked).unwrap_or(i64::MAX).into(),
                i64::try_from(summary.open).unwrap_or(i64::MAX).into(),
                slot.into(),
            ],
        ))
        .await?;
        Ok(())
    }
}
