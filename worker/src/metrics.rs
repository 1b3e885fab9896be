//! Delivery metrics (prometheus-client): outcomes, error classes, latency, `queue_size` by
//! queue and the age of the oldest due delivery. Gauges that describe the backlog are read
//! from the database and the broker when scraped, so they are right after any restart.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use sea_orm::DatabaseConnection;

use crate::deliveries::{AttemptOutcome, backlog, error_class, failing_streaks};
use crate::sender::AttemptResult;
use runtime::bus::EventBus;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClassLabel {
    pub class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabel {
    pub queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabel {
    pub endpoint_id: String,
}

/// Endpoints shown in `webhook_endpoint_failing_streak`: the longest streaks only, so the
/// series count stays bounded however many endpoints fail.
pub const FAILING_STREAKS_SHOWN: u64 = 10;

pub struct DeliveryMetrics {
    pub deliveries: Family<StatusLabel, Counter>,
    pub errors: Family<ClassLabel, Counter>,
    pub duration: Histogram,
    pub queue_size: Family<QueueLabel, Gauge>,
    pub oldest_due_age: Gauge<f64, AtomicU64>,
    pub first_attempt_lag: Histogram,
    pub event_to_delivered: Histogram,
    pub handed_back: Counter,
    /// Events fanned out from their express copies, before the broker delivered them.
    pub express_fanned_out: Counter,
    /// Broker messages settled without the database: their event's copy came first.
    pub express_settled: Counter,
    /// First attempts sent while their rows' insert committed, and those of them whose rows
    /// that insert did not make (extra sends).
    pub express_early_sends: Counter,
    pub express_extra_sends: Counter,
    /// Express copies dropped unused: too old, or unreadable (the broker carries them).
    pub express_dropped: Counter,
    /// Attempts whose outcome died with their worker (taken over when its lease ran out).
    pub unknown_outcomes: Counter,
    /// Merchants whose endpoints a fan-out took from the worker's copy, and read.
    pub endpoints_from_copy: Counter,
    pub endpoints_read: Counter,
    pub failing_streaks: Family<EndpointLabel, Gauge>,
}

impl DeliveryMetrics {
    pub fn new(registry: &mut Registry) -> DeliveryMetrics {
        let metrics = DeliveryMetrics {
            deliveries: Family::default(),
            errors: Family::default(),
            duration: Histogram::new(exponential_buckets(0.005, 2.0, 12)),
            queue_size: Family::default(),
            oldest_due_age: Gauge::default(),
            first_attempt_lag: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            event_to_delivered: Histogram::new(exponential_buckets(0.001, 2.0, 20)),
            handed_back: Counter::default(),
            express_fanned_out: Counter::default(),
            express_dropped: Counter::default(),
            express_early_sends: Counter::default(),
            express_extra_sends: Counter::default(),
            express_settled: Counter::default(),
            unknown_outcomes: Counter::default(),
            endpoints_from_copy: Counter::default(),
            endpoints_read: Counter::default(),
            failing_streaks: Family::default(),
        };
        // Every class exists from the start, so `rate()` and alerts see a 0 before the first
        // error rather than no series at all.
        for class in crate::sender::ErrorClass::ALL {
            let _ = metrics.errors.get_or_create(&ClassLabel {
                class: class.as_str().into(),
            });
        }
        registry.register(
            "webhook_deliveries",
            "Webhook delivery attempts by resulting delivery status (succeeded, retrying, failed)",
            metrics.deliveries.clone(),
        );
        registry.register(
            "webhook_delivery_errors",
            "Failed webhook attempts by class (timeout, connect, tls, dns, http_3xx, http_4xx, http_5xx, blocked)",
            metrics.errors.clone(),
        );
        registry.register(
            "webhook_delivery_duration_seconds",
            "Duration of webhook HTTP attempts",
            metrics.duration.clone(),
        );
        registry.register(
            "queue_size",
            "Work waiting: RabbitMQ fan-out queue and its dead letters, and delivery rows by state",
            metrics.queue_size.clone(),
        );
        registry.register(
            "webhook_oldest_due_delivery_age_seconds",
            "How long the oldest due delivery has been waiting (a stuck worker shows here first)",
            metrics.oldest_due_age.clone(),
        );
        registry.register(
            "webhook_event_to_first_attempt_seconds",
            "Time from an event's commit to the first HTTP attempt of each of its deliveries",
            metrics.first_attempt_lag.clone(),
        );
        registry.register(
            "webhook_event_to_delivered_seconds",
            "Time from an event's commit to the 2xx that completed each of its deliveries",
            metrics.event_to_delivered.clone(),
        );
        registry.register(
            "webhook_deliveries_handed_back",
            "Claimed deliveries given back unsent because their endpoint had no free slot in time",
            metrics.handed_back.clone(),
        );
        registry.register(
            "webhook_express_events",
            "Events fanned out from their express copy on Redis, before the broker's message came",
            metrics.express_fanned_out.clone(),
        );
        registry.register(
            "webhook_express_settled",
            "Broker messages acknowledged without the database because their event's express copy was fanned out first",
            metrics.express_settled.clone(),
        );
        registry.register(
            "webhook_express_early_sends",
            "First attempts of express-lane events sent while their delivery rows' insert committed",
            metrics.express_early_sends.clone(),
        );
        registry.register(
            "webhook_express_extra_sends",
            "Early sends whose rows their insert did not make (another fan-out made them, or the insert failed for two minutes): requests beyond the one each delivery's own claim sends",
            metrics.express_extra_sends.clone(),
        );
        registry.register(
            "webhook_express_dropped",
            "Express copies dropped unused (older than four seconds, or unreadable); the relay publishes those events after its writer grace",
            metrics.express_dropped.clone(),
        );
        registry.register(
            "webhook_fanout_endpoints_from_copy",
            "Merchants whose enabled endpoints a fan-out took from the worker's copy, kept at the endpoints version the events named",
            metrics.endpoints_from_copy.clone(),
        );
        registry.register(
            "webhook_fanout_endpoints_read",
            "Merchants whose enabled endpoints a fan-out read from the database (no copy as new as its events' endpoints version, or events without one)",
            metrics.endpoints_read.clone(),
        );
        registry.register(
            "webhook_unknown_outcomes",
            "Attempts recorded with outcome unknown: a worker stopped before recording them, so the receiver may have that webhook twice",
            metrics.unknown_outcomes.clone(),
        );
        registry.register(
            "webhook_endpoint_failing_streak",
            "Consecutive failed attempts of the endpoints failing longest (at most 10 series)",
            metrics.failing_streaks.clone(),
        );
        metrics
    }

    pub fn observe(&self, outcome: &AttemptOutcome, result: Option<&AttemptResult>) {
        let status = match outcome {
            AttemptOutcome::Succeeded => "succeeded",
            AttemptOutcome::WillRetry { .. } => "retrying",
            AttemptOutcome::Failed { .. } => "failed",
            AttemptOutcome::Skipped => return,
        };
        self.deliveries
            .get_or_create_owned(&StatusLabel {
                status: status.into(),
            })
            .inc();
        if let Some(result) = result {
            self.duration.observe(result.duration.as_secs_f64());
            if let Some(class) = error_class(result) {
                self.errors
                    .get_or_create_owned(&ClassLabel {
                        class: class.as_str().into(),
                    })
                    .inc();
            }
        }
    }

    /// Reads the backlog from the database and the broker into the gauges. A source that does
    /// not answer within a second leaves its gauges as they were.
    pub async fn refresh_backlog(&self, db: &DatabaseConnection, bus: &EventBus) {
        let set = |queue: &str, value: u64| {
            self.queue_size
                .get_or_create_owned(&QueueLabel {
                    queue: queue.into(),
                })
                .set(i64::try_from(value).unwrap_or(i64::MAX));
        };
        if let Ok(Ok(b)) = tokio::time::timeout(Duration::from_secs(1), backlog(db)).await {
            set("deliveries_due", b.due);
            set("deliveries_retrying", b.retrying);
            set("deliveries_processing", b.processing);
            set("deliveries_failed", b.failed);
            self.oldest_due_age.set(b.oldest_due_age_seconds);
        }
        if let Ok(Ok(streaks)) = tokio::time::timeout(
            Duration::from_secs(1),
            failing_streaks(db, FAILING_STREAKS_SHOWN),
        )
        .await
        {
            self.failing_streaks.clear();
            for (endpoint_id, streak) in streaks {
                self.failing_streaks
                    .get_or_create(&EndpointLabel {
                        endpoint_id: endpoint_id.to_string(),
                    })
                    .set(i64::from(streak));
            }
        }
        if let Ok(Ok(d)) = tokio::time::timeout(Duration::from_secs(1), bus.depths()).await {
            set("events", d.events);
            set("events_dead_letter", d.dead_letters);
        }
    }
}
