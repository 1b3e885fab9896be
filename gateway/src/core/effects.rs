//! What happens after a commit, owned in one place so no caller can forget a step: publish a
//! new payment's event, or wake the outbox relay for the others (the events just committed go
//! out now rather than at the next interval), drop the merchant's cached recent list, count the
//! status change, and record a failed payment in the merchant's log store.
//!
//! Write services return a [`Committed`]: their value with the [`Fact`]s the commit made. Its
//! value is reached only through [`Effects::apply`], so a caller cannot take the result and
//! forget what must follow.

use entity::ids::Scope;
use std::sync::Arc;

use entity::payment_status::PaymentStatus;
use entity::payments;
use entity::status::LogLevel;
use runtime::cache::Cache;
use runtime::log_store::{Entry, record};
use sea_orm::DatabaseConnection;

use crate::core::cache_keys;
use crate::core::metrics::{ApiMetrics, CurrencyLabel};
use crate::core::relay::Relay;

/// Something a commit made that has effects after it.
#[derive(Debug, Clone)]
pub enum Fact {
    /// Events (or payment fields) of this merchant's mode were committed, nothing to count.
    Events(Scope),
    /// A payment was created, perhaps already moved on in the same transaction; its events
    /// go out by the relay, or by this writer when its first event is its only one.
    PaymentCreated(payments::Model, Publisher),
    /// A payment moved to the status it has now.
    PaymentMoved(payments::Model),
    /// A provider reported success for a payment already called over.
    LateSuccess {
        payment: payments::Model,
        provider_event_id: String,
    },
    /// A payout moved to the status it has now, its event committed.
    PayoutMoved(entity::payouts::Model),
    /// A payout's provider answer was lost; its amount stays held.
    PayoutAnswerLost(entity::payouts::Model),
}

/// Who publishes the events a commit wrote.
#[derive(Debug, Clone)]
pub enum Publisher {
    /// The relay, woken after the commit.
    Relay,
    /// The writer, right after the commit: this event, as committed and as it goes on the
    /// bus ([`runtime::outbox::Route::Writer`]).
    Writer(Box<entity::bus::EventOnBus>),
}

impl Fact {
    /// Whether the commit wrote events for the relay to publish.
    fn committed_events(&self) -> bool {
        !matches!(
            self,
            Fact::PayoutAnswerLost(_) | Fact::PaymentCreated(_, Publisher::Writer(_))
        )
    }
}

/// A write's value and the facts its commit made; [`Effects::apply`] hands the value over.
#[must_use = "apply it: `effects.apply(committed, request_id)` gives the value"]
#[derive(Debug)]
pub struct Committed<T> {
    value: T,
    facts: Vec<Fact>,
}

impl<T> Committed<T> {
    /// A value whose commit made no fact (a replay, a read after all).
    pub fn nothing(value: T) -> Committed<T> {
        Committed {
            value,
            facts: Vec::new(),
        }
    }

    pub fn new(value: T, facts: Vec<Fact>) -> Committed<T> {
        Committed { value, facts }
    }

    /// One more fact of the same commit.
    pub fn and(mut self, fact: Fact) -> Committed<T> {
        self.facts.push(fact);
        self
    }

    /// The value, to look at; it is taken only through [`Effects::apply`].
    pub fn peek(&self) -> &T {
        &self.value
    }

    /// The facts, to look at (tests, logs); the value stays inside.
    pub fn facts(&self) -> &[Fact] {
        &self.facts
    }

    /// A later commit's value, after this one's facts and then its own.
    pub fn then<U>(self, next: Committed<U>) -> Committed<U> {
        let mut facts = self.facts;
        facts.extend(next.facts);
        Committed {
            value: next.value,
            facts,
        }
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Committed<U> {
        Committed {
            value: f(self.value),
            facts: self.facts,
        }
    }
}

#[derive(Clone)]
pub struct Effects {
    pub db: DatabaseConnection,
    pub bus: runtime::bus::EventBus,
    pub relay: Relay,
    pub cache: Cache,
    pub metrics: Arc<ApiMetrics>,
}

impl Effects {
    /// Carries out every fact of a commit, in order, and hands its value over.
    pub async fn apply<T>(&self, committed: Committed<T>, request_id: Option<&str>) -> T {
        // An event its writer publishes goes out at once, with no turn of the relay's to wait
        // for; the relay is woken only for events left to it.
        for fact in &committed.facts {
            if let Fact::PaymentCreated(_, Publisher::Writer(event)) = fact {
                self.relay.publish_now(event.as_ref().clone());
            }
        }
        // The relay first, and once: the events are the merchant's webhooks, on the critical
        // path; metering, caches and logs can follow while it publishes. A second wake-up is
        // not free: once the relay has taken the first and is publishing, it is kept for
        // after, and that turn finds nothing (a transaction, a locking SELECT and a commit
        // for a third of the payments at 20/s, in PostgreSQL's statement log).
        if committed.facts.iter().any(Fact::committed_events) {
            self.relay.notify();
        }
        for fact in &committed.facts {
            match fact {
                Fact::Events(scope) => self.recent_payments_changed(scope).await,
                Fact::PaymentCreated(p, _) => self.payment_created(p, request_id).await,
                Fact::PaymentMoved(p) => self.payment_moved(p, request_id).await,
                Fact::LateSuccess {
                    payment,
                    provider_event_id,
                } => self.late_success(payment, provider_event_id).await,
                Fact::PayoutMoved(p) => self.payout_moved(p),
                Fact::PayoutAnswerLost(p) => self.payout_answer_lost(p, request_id).await,
            }
        }
        committed.value
    }

    /// A payment was created; it may already have moved on in the same transaction (a test
    /// card, a provider that answered at once, a provider failure).
    async fn payment_created(&self, p: &payments::Model, request_id: Option<&str>) {
        // Its usage (a payment created, its volume) is counted from the payments table when
        // read, not metered here: a crash right after the commit would have lost it.
        let scope = p.scope();
        self.metrics
            .payment_status(p.provider.as_str(), PaymentStatus::Pending.as_str());
        self.metrics
            .amounts
            .get_or_create_owned(&CurrencyLabel {
                currency: p.currency.clone(),
            })
            .observe(p.amount as f64);
        if p.status == PaymentStatus::Pending {
            self.recent_payments_changed(&scope).await;
            self.log_if_failed(p, request_id).await;
        } else {
            self.payment_moved(p, request_id).await;
        }
    }

    /// A payment moved to the status it has now.
    async fn payment_moved(&self, p: &payments::Model, request_id: Option<&str>) {
        self.metrics
            .payment_status(p.provider.as_str(), p.status.as_str());
        self.recent_payments_changed(&p.scope()).await;
        self.log_if_failed(p, request_id).await;
    }

    /// A provider reported success for a payment already failed or cancelled (it is flagged
    /// `requires_reconciliation`): a critical log entry for the merchant and a metric the
    /// alert rules page on, because money may have moved on a payment called over.
    async fn late_success(&self, p: &payments::Model, provider_event_id: &str) {
        self.metrics.late_success(p.provider.as_str());
        self.log_alarm(Entry {
                scope: Some(&p.scope()),
                level: LogLevel::Critical,
                source: "payments",
                message: &format!(
                    "Payment {} was reported succeeded by {} after it was {}: reconcile it with the provider",
                    p.id, p.provider, p.status
                ),
                context: Some(serde_json::json!({
                    "payment_id": p.id,
                    "provider": p.provider,
                    "status": p.status,
                    "provider_event_id": provider_event_id,
                })),
                request_id: None,
            })
        .await;
        self.recent_payments_changed(&p.scope()).await;
    }

    /// A payout moved to the status it has now, its event committed: counted (`apply` has
    /// already woken the relay).
    fn payout_moved(&self, p: &entity::payouts::Model) {
        self.metrics.payout(p.provider.as_str(), p.status.as_str());
    }

    /// A payout's provider answer was lost: an error entry in the merchant's log store, since
    /// its amount stays held until the provider's webhook or an operator settles it.
    async fn payout_answer_lost(&self, p: &entity::payouts::Model, request_id: Option<&str>) {
        self.log_alarm(Entry {
            scope: Some(&p.scope()),
            level: LogLevel::Error,
            source: "payouts",
            message: &format!(
                "Payout {}: {}'s answer was lost; it stays pending, its amount held, until {} confirms it",
                p.id, p.provider, p.provider
            ),
            context: Some(serde_json::json!({
                "payout_id": p.id,
                "provider": p.provider,
                "amount": p.amount,
                "currency": p.currency,
            })),
            request_id,
        })
        .await;
    }

    /// Events of this merchant were committed outside [`Effects::apply`] (a usage alert):
    /// the relay is woken and the merchant's cached recent list dropped.
    pub async fn events_committed(&self, scope: &Scope) {
        self.relay.notify();
        self.recent_payments_changed(scope).await;
    }

    /// Payments of this merchant (or their events) changed: its cached recent list is dropped
    /// before the request answers (with its usage, in one round trip).
    async fn recent_payments_changed(&self, scope: &Scope) {
        self.cache
            .delete_before_answer(&cache_keys::recent_payments(scope))
            .await;
    }

    /// A failed payment is an error entry in its merchant's log store.
    async fn log_if_failed(&self, p: &payments::Model, request_id: Option<&str>) {
        if p.status != PaymentStatus::Failed {
            return;
        }
        self.log_alarm(Entry {
            scope: Some(&p.scope()),
            level: LogLevel::Error,
            source: "payments",
            message: &format!(
                "Payment {} failed: {}",
                p.id,
                p.failure_code.as_deref().unwrap_or("unknown")
            ),
            context: Some(serde_json::json!({
                "payment_id": p.id,
                "provider": p.provider,
                "failure_code": p.failure_code,
                "failure_message": p.failure_message,
            })),
            request_id,
        })
        .await;
    }

    /// An error or critical entry about a merchant in its log store, and its cached list of
    /// recent alarming entries dropped so the entry shows at once.
    async fn log_alarm(&self, entry: Entry<'_>) {
        let scope = entry.scope.cloned();
        record(&self.db, &self.bus, entry).await;
        if let Some(scope) = scope {
            self.cache.delete(&cache_keys::recent_logs(&scope)).await;
        }
    }
}
