//! The gateway's metrics (prometheus-client): HTTP, payment status changes and amounts,
//! inbound provider webhooks. `api::middleware` records the HTTP ones; the commit helper
//! records payment changes.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: String,
    pub method: String,
    pub status_class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PayoutLabels {
    pub provider: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PaymentLabels {
    pub gateway: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    pub provider: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CurrencyLabel {
    pub currency: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DependencyLabel {
    pub dependency: String,
}

pub struct ApiMetrics {
    /// 1 when the dependency answered the last readiness check, 0 when it did not.
    pub dependencies: Family<DependencyLabel, Gauge>,
    pub requests: Family<HttpLabels, Counter>,
    pub errors: Family<HttpLabels, Counter>,
    pub duration: Family<HttpLabels, Histogram>,
    pub active: Gauge,
    pub payments: Family<PaymentLabels, Counter>,
    pub amounts: Family<CurrencyLabel, Histogram>,
    pub webhooks_received: Family<WebhookLabels, Counter>,
    /// Successes reported for payments already failed or cancelled, by provider.
    pub late_successes: Family<ProviderLabel, Counter>,
    /// Events committed and not yet confirmed by the broker, and the oldest one's age.
    pub outbox_depth: Gauge,
    pub outbox_oldest_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Writers' events pushed to the express lane, by what became of the push.
    pub express_pushes: Family<OutcomeLabel, Counter>,
    /// Of those, the events whose push was not answered within its 20 ms.
    pub express_slow_pushes: Counter,
    /// Payouts sent whose outcome is unknown (the provider's answer was lost), holding their
    /// amounts until the provider's webhook or an operator settles them.
    pub payouts_unresolved: Gauge,
    /// 0 closed, 1 half-open, 2 open, per provider and circuit.
    pub circuits: Family<CircuitLabels, Gauge>,
    /// Requests refused with 429 by the API rate limiter.
    pub rate_limited: Counter,
    /// Payout status changes, by provider and new status.
    pub payouts: Family<PayoutLabels, Counter>,
    /// The same by status only (the original specification's `payouts_by_status_total`).
    pub payouts_by_status: Family<StatusLabel, Counter>,
    /// Requests refused with 429 because a hard monthly limit of the plan was reached.
    pub quota_exceeded: Counter,
    /// Dashboard pages with an open live socket on this gateway.
    pub dashboard_sockets: Gauge,
    /// 1 while this gateway hears the bus for its dashboard pages.
    pub dashboard_listening: Gauge,
    /// Usage counters moved from the cache to the database, and flushes that failed.
    pub usage_flushed: Counter,
    pub usage_flush_failures: Counter,
    /// Usage thresholds (80 %, 95 % of a plan's limit) alerted.
    pub usage_thresholds: Counter,
    /// Broken ledger invariants found by the checks, and the checks run.
    pub ledger_violations: Counter,
    pub ledger_checks: Counter,
    /// Pending funds made available.
    pub funds_released: Counter,
    /// Reconciliation items open (read at scrape time), and runs by outcome.
    pub reconciliation_open: Gauge,
    pub reconciliation_runs: Family<OutcomeLabel, Counter>,
    /// Days from today on that have their partitions (read at scrape time; PostgreSQL only).
    pub partitions_ahead: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CircuitLabels {
    pub provider: String,
    pub circuit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabel {
    pub provider: String,
}

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 14))
}

fn amount_histogram() -> Histogram {
    Histogram::new(exponential_buckets(100.0, 10.0, 8))
}

impl ApiMetrics {
    pub fn reconciliation_run(&self, outcome: &str) {
        self.reconciliation_runs
            .get_or_create_owned(&OutcomeLabel {
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn new(registry: &mut Registry) -> ApiMetrics {
        let m = ApiMetrics {
            dependencies: Family::default(),
            requests: Family::default(),
            errors: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            active: Gauge::default(),
            payments: Family::default(),
            amounts: Family::new_with_constructor(amount_histogram),
            webhooks_received: Family::default(),
            late_successes: Family::default(),
            outbox_depth: Gauge::default(),
            outbox_oldest_age: Gauge::default(),
            express_pushes: Family::default(),
            express_slow_pushes: Counter::default(),
            payouts_unresolved: Gauge::default(),
            circuits: Family::default(),
            rate_limited: Counter::default(),
            payouts: Family::default(),
            payouts_by_status: Family::default(),
            quota_exceeded: Counter::default(),
            dashboard_sockets: Gauge::default(),
            dashboard_listening: Gauge::default(),
            usage_flushed: Counter::default(),
            usage_flush_failures: Counter::default(),
            usage_thresholds: Counter::default(),
            ledger_violations: Counter::default(),
            ledger_checks: Counter::default(),
            funds_released: Counter::default(),
            reconciliation_open: Gauge::default(),
            reconciliation_runs: Family::default(),
            partitions_ahead: Gauge::default(),
        };
        registry.register(
            "partitions_ahead",
            "Days from today on, without a gap, for which events, deliveries, attempts and logs all have their day partition (8 when retention keeps up; below that, rows soon land in the default partitions). PostgreSQL only",
            m.partitions_ahead.clone(),
        );
        registry.register(
            "reconciliation_items_open",
            "Differences between the ledger and the providers' reports still open (read from the database at scrape time)",
            m.reconciliation_open.clone(),
        );
        registry.register(
            "reconciliation_runs",
            "Reconciliation runs, completed or failed",
            m.reconciliation_runs.clone(),
        );
        registry.register(
            "ledger_invariant_violations",
            "Broken ledger invariants found by the scheduled check (unbalanced transactions, balances that are not the sums of their entries); any is a page",
            m.ledger_violations.clone(),
        );
        registry.register(
            "ledger_checks",
            "Ledger invariant checks completed",
            m.ledger_checks.clone(),
        );
        registry.register(
            "ledger_funds_released",
            "Pending payment funds made available once their available_on passed",
            m.funds_released.clone(),
        );
        registry.register(
            "usage_thresholds_reached",
            "First crossings of 80 % or 95 % of a plan's monthly limit this month, alerted to the merchant",
            m.usage_thresholds.clone(),
        );
        registry.register(
            "usage_counters_flushed",
            "Usage counters (merchant, month, metric) added to the database by the flush",
            m.usage_flushed.clone(),
        );
        registry.register(
            "usage_flush_failures",
            "Usage flushes that failed (the counts stay in the cache for the next one)",
            m.usage_flush_failures.clone(),
        );
        registry.register(
            "dashboard_stream_sockets",
            "Dashboard pages with an open live socket (/dashboard/stream) on this gateway",
            m.dashboard_sockets.clone(),
        );
        registry.register(
            "dashboard_stream_listening",
            "1 while this gateway hears the bus for its dashboard pages, 0 while it reconnects",
            m.dashboard_listening.clone(),
        );
        registry.register(
            "api_rate_limited",
            "Requests refused with 429 because their API key's bucket was empty",
            m.rate_limited.clone(),
        );
        registry.register(
            "payouts",
            "Payout status changes by provider and new status (pending, processing, succeeded, failed)",
            m.payouts.clone(),
        );
        registry.register(
            "payouts_by_status",
            "Payout status changes by new status, all providers together",
            m.payouts_by_status.clone(),
        );
        registry.register(
            "api_quota_exceeded",
            "Requests refused with 429 quota_exceeded: a hard monthly limit of the merchant's plan was reached",
            m.quota_exceeded.clone(),
        );
        registry.register(
            "payouts_unresolved",
            "Payouts sent whose outcome is unknown (the provider's answer was lost): pending, amounts held, never sent again until settled",
            m.payouts_unresolved.clone(),
        );
        registry.register(
            "outbox_unpublished_events",
            "Events committed but not yet confirmed by the broker (the relay's backlog)",
            m.outbox_depth.clone(),
        );
        registry.register(
            "outbox_oldest_unpublished_age_seconds",
            "Age of the oldest event the relay has not published (0 when none waits)",
            m.outbox_oldest_age.clone(),
        );
        registry.register(
            "outbox_express_pushed_events",
            "Writers' events pushed to the express lane: for_a_worker (a worker was heard, the broker carries nothing), unheard (the broker carries them too), failed (the broker carries them), unanswered (no answer in a second: the relay takes them over after its grace)",
            m.express_pushes.clone(),
        );
        registry.register(
            "outbox_express_slow_pushes",
            "Writers' events whose express push was not answered within 20 ms: its answer is awaited up to a second more before the broker carries them",
            m.express_slow_pushes.clone(),
        );
        registry.register(
            "provider_circuit_state",
            "Provider circuit breakers: 0 closed, 1 half-open, 2 open, by provider and circuit (create, query)",
            m.circuits.clone(),
        );
        registry.register(
            "dependency_up",
            "Whether the database, broker and cache answered the last readiness check (1) or not (0)",
            m.dependencies.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests by route template, method and status class",
            m.requests.clone(),
        );
        registry.register(
            "http_request_errors",
            "HTTP requests answered 4xx or 5xx",
            m.errors.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            m.duration.clone(),
        );
        registry.register(
            "active_connections",
            "Requests being served now",
            m.active.clone(),
        );
        registry.register(
            "payments",
            "Payment status changes by provider (gateway) and new status",
            m.payments.clone(),
        );
        registry.register(
            "payment_amount",
            "Amounts of created payments, in minor units, by currency",
            m.amounts.clone(),
        );
        // Every provider's series exists from the start at 0, so `increase()` sees the first one.
        for provider in entity::status::Provider::ALL {
            m.late_successes.get_or_create_owned(&ProviderLabel {
                provider: provider.as_str().into(),
            });
        }
        registry.register(
            "payments_requiring_reconciliation",
            "Provider successes for payments already failed or cancelled (flagged requires_reconciliation)",
            m.late_successes.clone(),
        );
        registry.register(
            "webhooks_received",
            "Inbound provider webhooks by provider and outcome (applied, duplicate, ignored, unknown_type, unknown_payment, invalid_signature, malformed, verify_failed)",
            m.webhooks_received.clone(),
        );
        m
    }

    pub fn dependency_up(&self, dependency: &str, up: bool) {
        self.dependencies
            .get_or_create_owned(&DependencyLabel {
                dependency: dependency.into(),
            })
            .set(i64::from(up));
    }

    pub fn late_success(&self, provider: &str) {
        self.late_successes
            .get_or_create_owned(&ProviderLabel {
                provider: provider.into(),
            })
            .inc();
    }

    pub fn webhook_received(&self, provider: &str, outcome: &str) {
        self.webhooks_received
            .get_or_create_owned(&WebhookLabels {
                provider: provider.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    /// A payout reached `status`.
    pub fn payout(&self, provider: &str, status: &str) {
        self.payouts
            .get_or_create_owned(&PayoutLabels {
                provider: provider.into(),
                status: status.into(),
            })
            .inc();
        self.payouts_by_status
            .get_or_create_owned(&StatusLabel {
                status: status.into(),
            })
            .inc();
    }

    pub fn payment_status(&self, provider: &str, status: &str) {
        self.payments
            .get_or_create_owned(&PaymentLabels {
                gateway: provider.into(),
                status: status.into(),
            })
            .inc();
    }
}
