//! Creating a payment: the provider called first, outside any transaction; then the payment,
//! its `payment.pending` event and whatever was already decided, committed together (with
//! the idempotency record when a key is given). On PostgreSQL the payment and its event are
//! one statement, so a payment created without a key and with nothing decided needs no
//! transaction around it.

use chrono::SubsecRound as _;
use chrono::Utc;
use entity::bus::EventOnBus;
use entity::event::EventType;
use entity::events;
use entity::ids::PaymentId;
use entity::payment_status::PaymentStatus;
use entity::status::Provider;
use entity::{merchants, payments};
use runtime::outbox::Route;
use sea_orm::TryIntoModel as _;
use sea_orm::sea_query::{
    Alias, Asterisk, CommonTableExpression, Expr, ExprTrait as _, PostgresQueryBuilder, Query,
    WithClause,
};
use sea_orm::{
    ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, EntityTrait, FromQueryResult as _,
    QueryTrait, Statement,
};
use tracing::Instrument as _;

use super::cards::CardOutcome;
use super::objects::Payment;
use super::service::{Deps, transition, view_json};
use super::validation::NewPayment;
use crate::core::effects::{Committed, Fact, Publisher};
use crate::core::error::ServiceError;
use crate::core::idempotency::{Begun, Idempotent};
use crate::ledger::FundsPolicy;
use crate::merchants::AuthedMerchant;
use crate::providers::{ProviderError, StartRequest, Started};

const CREATE_OPERATION: &str = "POST /v1/payments";

/// A created (or replayed) payment.
pub struct Created {
    /// What the merchant is answered (the stored first response on a replay).
    pub payment: Payment,
    /// A replay of an earlier request with the same key, which committed nothing.
    pub replayed: bool,
}

/// Creates a payment, idempotently when a key is given (see [`crate::core::idempotency`]).
///
/// For an external provider the provider is called first, outside any transaction (a slow
/// provider must not hold database locks); then the payment, its `payment.pending` event and
/// the outcome commit together. A provider that fails or times out leaves a `failed` payment
/// with `failure_code: provider_error` and its event; the handler answers 502 for it.
pub async fn create(
    deps: &Deps<'_>,
    merchant: &AuthedMerchant,
    new: NewPayment,
    idempotency_key: Option<&str>,
    request_id: Option<&str>,
    checkout_base: &str,
) -> Result<Committed<Created>, ServiceError> {
    let Deps {
        db,
        providers,
        funds,
    } = *deps;
    // Live keys move real money through live credentials; test keys never reach them.
    if let Err(e) = providers.check_mode(new.provider, merchant.livemode) {
        return Err(e.into());
    }
    let scope = merchant.scope();
    let request = Idempotent {
        scope: &scope,
        key: idempotency_key,
        operation: CREATE_OPERATION,
        fingerprint: new.fingerprint(),
    };
    let (resumed, claim) = match request.begin::<Payment>(db).await? {
        Begun::Replay(payment) => {
            return Ok(Committed::nothing(Created {
                payment,
                replayed: true,
            }));
        }
        Begun::Proceed { resumed, claim } => (resumed.and_then(|id| PaymentId::parse(&id)), claim),
    };
    // The payment id is also the provider's idempotency key: a retry that takes over the
    // claim of a request that died reuses it, so the provider answers with what it made.
    let id = resumed.unwrap_or_else(PaymentId::generate);
    request.note(db, &id).await?;
    let mut draft = draft(id, merchant, &new, checkout_base);
    let started = match new.provider {
        Provider::Simulated => None,
        provider => {
            let customer = new.customer.as_ref();
            let start = StartRequest {
                payment: &draft,
                customer,
                metadata: &new.metadata,
            };
            Some(providers.start(provider, start).await)
        }
    };
    let decided = decide(&mut draft, &new, started);
    let mut committed = None;
    let payment = if idempotency_key.is_none() && decided.is_none() && in_one_statement(db) {
        // Nothing to store for a key and nothing decided: the payment and its event are one
        // statement, which is its own transaction (BEGIN and COMMIT would be two more round
        // trips on the API's path).
        insert_with_event(db, draft, request_id, publish_route(None))
            .instrument(request.transaction_span())
            .await
            .map(|(model, event)| {
                let view = Payment::from(&model);
                committed = Some((model, Some(event)));
                view
            })
            .map_err(ServiceError::from)
    } else {
        request
            .finish(
                db,
                async |txn: &DatabaseTransaction| -> Result<Payment, DbErr> {
                    let (model, event) = insert(txn, draft, decided, request_id, funds).await?;
                    let view = Payment::from(&model);
                    committed = Some((model, event));
                    Ok(view)
                },
            )
            .await
    };
    // The claim's heartbeat runs until the work is done, however long the provider took.
    drop(claim);
    let created = Created {
        payment: payment?,
        replayed: false,
    };
    Ok(match committed {
        Some((model, event)) => {
            let publisher = match event {
                Some(e) => Publisher::Writer(Box::new(e)),
                None => Publisher::Relay,
            };
            Committed::new(created, vec![Fact::PaymentCreated(model, publisher)])
        }
        None => Committed::nothing(created),
    })
}

/// The payment row as it will be inserted, before any provider answered.
fn draft(
    id: PaymentId,
    merchant: &AuthedMerchant,
    new: &NewPayment,
    checkout_base: &str,
) -> payments::Model {
    // At PostgreSQL's precision, so that the event written beside the row shows the row.
    let now = Utc::now().trunc_subsecs(6);
    let simulated = new.provider == Provider::Simulated;
    payments::Model {
        provider_reference: simulated.then(|| format!("sim_{}", id.trim_start_matches("pay_"))),
        checkout_url: simulated.then(|| format!("{checkout_base}/sandbox/checkout/{id}")),
        // Kept only if the payment ends up with a checkout URL (see `decide`).
        qr_code_url: Some(format!("{checkout_base}/v1/payments/{id}/qr")),
        id,
        merchant_id: merchant.merchant_id.clone(),
        amount: new.amount.minor_units(),
        currency: new.currency.code().to_string(),
        status: PaymentStatus::Pending,
        provider: new.provider,
        reference: new.reference.clone(),
        description: new.description.clone(),
        customer: new
            .customer
            .as_ref()
            .and_then(|c| serde_json::to_value(c).ok()),
        metadata: serde_json::to_value(&new.metadata).unwrap_or_default(),
        payment_method: new
            .payment_method()
            .and_then(|m| serde_json::to_value(m).ok()),
        amount_refunded: 0,
        failure_code: None,
        failure_message: None,
        livemode: merchant.livemode,
        created_at: now,
        updated_at: now,
        client_secret: None,
        return_url: new.return_url.clone(),
        last_polled_at: None,
        requires_reconciliation: false,
    }
}

/// The status a new payment moves to at once, and its failure's code and message.
type Decided = (PaymentStatus, Option<(String, String)>);

/// What a test card or the provider already decided for a new payment; the provider's
/// references go into the draft.
fn decide(
    draft: &mut payments::Model,
    new: &NewPayment,
    started: Option<Result<Started, ProviderError>>,
) -> Option<Decided> {
    let mut decided: Option<Decided> = match new.card.as_ref().map(|c| c.outcome) {
        Some(CardOutcome::Succeeds) => Some((PaymentStatus::Succeeded, None)),
        Some(CardOutcome::Declined(code, message)) => {
            Some((PaymentStatus::Failed, Some((code.into(), message.into()))))
        }
        None => None,
    };
    match started {
        Some(Ok(s)) => {
            draft.provider_reference = Some(s.reference);
            draft.checkout_url = s.checkout_url;
            draft.client_secret = s.client_secret;
            decided = s.status.map(|st| (st, None));
        }
        Some(Err(e)) => {
            tracing::warn!(provider = %draft.provider, payment_id = %draft.id, error = %e, "provider call failed");
            decided = Some((
                PaymentStatus::Failed,
                Some(("provider_error".into(), e.to_string())),
            ));
        }
        None => {}
    }
    if !draft.checkout_url.as_deref().is_some_and(super::qr::fits) {
        draft.qr_code_url = None;
    }
    decided
}

/// The payment, its `payment.pending` event, and whatever the provider (or a test card)
/// already decided, with one event per change.
async fn insert(
    txn: &DatabaseTransaction,
    draft: payments::Model,
    decided: Option<Decided>,
    request_id: Option<&str>,
    funds: FundsPolicy,
) -> Result<(payments::Model, Option<EventOnBus>), DbErr> {
    let route = publish_route(decided.as_ref());
    let (model, event) = insert_with_event(txn, draft, request_id, route).await?;
    let model = match decided {
        None => model,
        Some((to, failure)) => {
            let failure = failure.as_ref().map(|(c, m)| (c.as_str(), m.as_str()));
            transition(txn, model, to, failure, request_id, funds)
                .await?
                .unwrap_or_else(|m| m)
        }
    };
    Ok((model, (route == Route::Writer).then_some(event)))
}

/// Who publishes the new payment's event. When it is the payment's only event, the writer does,
/// right after the commit, rather than wait for the relay's turn (the webhook's critical path);
/// a payment already decided has later events in the same commit, and the relay publishes them
/// all, in order.
fn publish_route(decided: Option<&Decided>) -> Route {
    match decided {
        None => Route::Writer,
        Some(_) => Route::Bus,
    }
}

/// Inserts the payment and its `payment.pending` event, and gives back the payment's row and
/// the event as it goes on the bus. On PostgreSQL that is one statement (`WITH … AS (INSERT
/// INTO events …) INSERT INTO payments … RETURNING *, (SELECT endpoints_version …)`), atomic
/// on its own, which also reads the merchant's endpoints version for the worker; elsewhere two,
/// which the caller's transaction makes atomic, and the event carries no version.
async fn insert_with_event<C: ConnectionTrait>(
    db: &C,
    draft: payments::Model,
    request_id: Option<&str>,
    route: Route,
) -> Result<(payments::Model, EventOnBus), DbErr> {
    let (_, event) = runtime::outbox::event(
        &draft.scope(),
        EventType::PaymentPending,
        Some(&draft.id),
        view_json(&draft),
        request_id,
        route,
    );
    let row = event.clone().try_into_model()?;
    let merchant_id = draft.merchant_id.clone();
    let payment = payments::Entity::insert(payments::ActiveModel::from(draft));
    if !in_one_statement(db) {
        let model = payment.exec_with_returning(db).await?;
        events::Entity::insert(event)
            .exec_without_returning(db)
            .await?;
        return Ok((model, EventOnBus::from(row)));
    }
    let mut statement = payment.into_query();
    // The version as of this statement's snapshot: any endpoint change committed before the
    // merchant sent this request is counted in it (a trigger bumps it in the change's commit).
    let endpoints_version = Query::select()
        .column(Alias::new(merchants::ENDPOINTS_VERSION))
        .from(merchants::Entity)
        .and_where(Expr::col(merchants::Column::Id).eq(merchant_id.as_str()))
        .to_owned();
    statement.returning(Query::returning().exprs([
        Expr::col(Asterisk),
        Expr::SubQuery(None, Box::new(endpoints_version.into())),
    ]));
    let with_event = WithClause::new()
        .cte(
            CommonTableExpression::new()
                .query(events::Entity::insert(event).into_query())
                .table_name("pending_event")
                .to_owned(),
        )
        .to_owned();
    let (sql, values) = statement.with(with_event).build(PostgresQueryBuilder);
    let returned = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            values,
        ))
        .await?
        .ok_or(DbErr::RecordNotInserted)?;
    let model = payments::Model::from_query_result(&returned, "")?;
    let mut event = EventOnBus::from(row);
    event.endpoints_version = returned.try_get("", merchants::ENDPOINTS_VERSION)?;
    Ok((model, event))
}

/// Whether the payment and its event are written by one statement (PostgreSQL's data-modifying
/// `WITH`); elsewhere they are two, and need a transaction.
fn in_one_statement(db: &impl ConnectionTrait) -> bool {
    db.get_database_backend() == DbBackend::Postgres
}
