//! The pending-payment poller: payments open at a provider for longer than a configured age
//! are re-queried, so a webhook that never came (or was lost) does not leave them pending
//! forever; the provider's own expiry (Moneroo `cancelled`, eBilling bill expiry) ends them.
//!
//! Several gateways may run it at once: each pass claims its batch by stamping
//! `last_polled_at` in a transaction that selected the rows `FOR UPDATE SKIP LOCKED`, so a
//! payment is asked about by one gateway per interval. [`Poller::poll_once`] is one pass, for
//! tests; [`Poller::run`] runs it on a `runtime::schedule` period.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use entity::payment_status::PaymentStatus;
use entity::payments;
use entity::status::Provider;
use runtime::schedule::{self, Schedule};
use sea_orm::sea_query::{Expr, LockBehavior, LockType};
use sea_orm::{
    ColumnTrait, Condition, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};

use crate::payments::inbound::Inbound;
use crate::payments::inbound::events::Applied;
use crate::payments::refunds;
use crate::providers::settings::ProviderSettings;

const BATCH: u64 = 50;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PollOutcome {
    pub checked: usize,
    pub moved: usize,
    pub errors: usize,
    /// Refunds a crashed request had left pending, settled by asking the provider again.
    pub refunds_settled: usize,
    /// Payouts the provider had for a while, finished by asking it again.
    pub payouts_settled: usize,
    /// Recorded payouts that had never been sent, sent now.
    pub payouts_sent: usize,
}

#[derive(Clone)]
pub struct Poller {
    inbound: Inbound,
    interval: Duration,
    age: Duration,
    max_age: Duration,
    running: Arc<AtomicBool>,
}

impl Poller {
    pub fn new(inbound: Inbound, settings: &ProviderSettings) -> Poller {
        Poller {
            inbound,
            interval: settings.poll_interval,
            age: settings.poll_age,
            max_age: settings.poll_max_age,
            running: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Claims up to a batch of open payments that are due a check.
    async fn claim(&self) -> Result<Vec<payments::Model>, DbErr> {
        use payments::Column as C;
        let now = Utc::now();
        let older_than = now - chrono::Duration::from_std(self.age).unwrap_or_default();
        let abandoned_before =
            now - chrono::Duration::from_std(self.max_age).unwrap_or(chrono::Duration::days(7));
        let checked_before = now - chrono::Duration::from_std(self.interval).unwrap_or_default();
        let txn = self.inbound.effects.db.begin().await?;
        let due = payments::Entity::find()
            .filter(C::Status.is_in([
                PaymentStatus::Pending.as_str(),
                PaymentStatus::Processing.as_str(),
            ]))
            .filter(C::Provider.ne(Provider::Simulated))
            .filter(C::ProviderReference.is_not_null())
            .filter(C::CreatedAt.lte(older_than))
            .filter(C::CreatedAt.gt(abandoned_before))
            .filter(
                Condition::any()
                    .add(C::LastPolledAt.is_null())
                    .add(C::LastPolledAt.lte(checked_before)),
            )
            .order_by_asc(C::CreatedAt)
            .limit(BATCH)
            .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
            .all(&txn)
            .await?;
        if !due.is_empty() {
            payments::Entity::update_many()
                .col_expr(C::LastPolledAt, Expr::value(now))
                .filter(C::Id.is_in(due.iter().map(|p| p.id.clone())))
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(due)
    }

    /// One pass: claim, ask each payment's provider, apply what it says; then settle refunds
    /// left pending longer than an idempotency claim lives (their request died).
    pub async fn poll_once(&self) -> Result<PollOutcome, DbErr> {
        if self.running.swap(true, Ordering::SeqCst) {
            return Ok(PollOutcome::default());
        }
        let result = async {
            let due = self.claim().await?;
            let mut outcome = PollOutcome {
                checked: due.len(),
                ..PollOutcome::default()
            };
            for payment in &due {
                if payment.provider == Provider::Simulated {
                    continue;
                }
                match self
                    .inbound
                    .verify_and_apply(payment, "poll", "", None)
                    .await
                {
                    Ok(Applied::Applied) => outcome.moved += 1,
                    Ok(_) => {}
                    Err(_) => outcome.errors += 1,
                }
            }
            let settled = refunds::reconcile_pending(
                &self.inbound.effects.db,
                &self.inbound.providers,
                refunds::PENDING_REFUND_STUCK_AFTER,
            )
            .await?;
            outcome.refunds_settled = self.inbound.effects.apply(settled, None).await;
            if outcome.refunds_settled > 0 {
                self.inbound.effects.relay.notify();
            }
            // Payouts recorded by a gateway that stopped before sending them: certainly
            // never sent (sent_at is committed before any call), so sent now, once.
            for payout in crate::payouts::never_sent(&self.inbound.effects.db, self.age).await? {
                let sent = crate::payouts::send(
                    &self.inbound.effects.db,
                    &self.inbound.providers,
                    &payout,
                )
                .await?;
                let sent = self.inbound.effects.apply(sent, None).await;
                if matches!(sent, crate::payouts::Sent::Answered(_)) {
                    outcome.payouts_sent += 1;
                }
            }
            // Payouts whose provider's webhook never came are asked about too.
            for payout in
                crate::payouts::due_for_requery(&self.inbound.effects.db, self.age).await?
            {
                match crate::payouts::refresh(
                    &self.inbound.effects.db,
                    &self.inbound.providers,
                    &payout,
                )
                .await
                {
                    Ok(refreshed) => {
                        if self.inbound.effects.apply(refreshed, None).await.is_some() {
                            outcome.payouts_settled += 1;
                        }
                    }
                    Err(_) => outcome.errors += 1,
                }
            }
            Ok(outcome)
        }
        .await;
        self.running.store(false, Ordering::SeqCst);
        result
    }

    /// Runs `poll_once` every interval until `stop` fires.
    pub async fn run(self, stop: tokio::sync::watch::Receiver<bool>) -> anyhow::Result<()> {
        let poller = self.clone();
        schedule::run(
            "provider poll",
            Schedule::Every(self.interval),
            stop,
            move || {
                let poller = poller.clone();
                async move {
                    match poller.poll_once().await {
                        Ok(o) if o.checked > 0 => tracing::info!(
                            checked = o.checked,
                            moved = o.moved,
                            errors = o.errors,
                            "provider poll"
                        ),
                        Ok(_) => {}
                        Err(e) => tracing::error!(error = %e, "provider poll failed"),
                    }
                }
            },
        )
        .await
    }
}
