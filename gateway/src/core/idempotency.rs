//! `Idempotency-Key` for every POST that creates something, claimed before any side effect.
//!
//! The key is claimed first: an in-progress row is committed before the provider is called
//! or a refund reserved, so a concurrent duplicate finds it instead of doing the work a second
//! time. The duplicate waits briefly for the first response and replays it; if the first is
//! still running after `WAIT_FOR_FIRST`, it gets 409 `idempotency_key_in_use` (Stripe's
//! answer) and may retry.
//! The first response is stored in the same transaction as the work, so a replay can never
//! describe work that rolled back. Same key and request → that response again; same key,
//! other request (or another operation) → 409 `idempotency_key_reused`. A request that fails
//! before completing gives its key back. A claim is kept alive by its request, and dies with
//! it: the claim names its owner (this process's `runtime::db::PROCESS_KEY`, an advisory lock
//! every connection of the process holds), and a retry takes the claim over at once when
//! - the owner is this process and no request of it holds the claim any more (it ended
//!   without giving the key back, as when the database was cut), or
//! - the owner is another process that PostgreSQL no longer sees (it was killed), or, in
//!   embedded mode (SQLite, one process), any other process, or
//! - its heartbeat (every [`HEARTBEAT`]) stopped more than [`CLAIM_TTL`] ago: the fallback
//!   for claims without an owner, and for an owner that hangs without dying.
//!
//! A live request's claim is never taken over, however long its provider takes.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;
use tracing::Instrument as _;

use chrono::Utc;
use entity::idempotency_keys;
use entity::ids::Scope;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    EntityTrait, QueryFilter, TransactionTrait,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::core::error::{IdempotencyError, ServiceError};

/// How long an unfinished claim holds its key without a heartbeat: several heartbeats, so a
/// slow database does not let a live claim go, and short enough that a retry after a crash
/// waits seconds, not a minute.
pub const CLAIM_TTL: Duration = Duration::from_secs(5);

/// How often a running request refreshes its claim.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// How long a duplicate waits for the first request to finish before it is answered 409
/// `idempotency_key_in_use`: most requests finish well within it, so most duplicates get the
/// first response; a slow provider call does not hold the duplicate's connection for long.
const WAIT_FOR_FIRST: Duration = Duration::from_secs(2);

/// `response_status` of a claim whose request has not finished.
const IN_PROGRESS: i32 = 0;

/// One idempotent request: who, which key, what operation, and a fingerprint of the request.
pub struct Idempotent<'a> {
    /// Keys are the merchant's in one mode: the same key in test and live are two keys.
    pub scope: &'a Scope,
    pub key: Option<&'a str>,
    pub operation: &'static str,
    pub fingerprint: String,
}

/// A response and whether it was replayed.
pub struct Outcome<T> {
    pub value: T,
    pub replayed: bool,
}

/// What makes a key acceptable, as every caller is told.
pub const KEY_RULE: &str = "Idempotency-Key must be 1 to 255 characters.";

/// Whether `key` may be used: 1 to 255 bytes.
pub fn key_is_valid(key: &str) -> bool {
    !key.is_empty() && key.len() <= 255
}

/// What [`Idempotent::begin`] found.
pub enum Begun<T> {
    /// The key was used before for this request: its stored response.
    Replay(T),
    /// The key is ours (or there is none): do the work, then [`Idempotent::finish`]. When an
    /// expired claim was taken over, `resumed` is what its request noted (see
    /// [`Idempotent::note`]), so the retry reuses the same object id.
    Proceed {
        resumed: Option<String>,
        /// Keeps the claim alive until dropped: hold it until the work is finished.
        claim: Claim,
    },
}

/// A claim held by a request of this process: while it lives, the claim is refreshed every
/// [`HEARTBEAT`] and counts as held; dropped (the request finished, failed, or was
/// cancelled), a claim not given back is free for the next retry to take over.
pub struct Claim {
    heartbeat: Option<tokio::task::AbortHandle>,
    _held: Option<Held>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(heartbeat) = self.heartbeat.take() {
            heartbeat.abort();
        }
    }
}

/// Which key a claim is for: merchant, mode, key.
type ClaimKey = (String, bool, String);

/// The claims requests of this process hold (with how many requests are trying for each), so
/// a retry landing here can tell a claim of a request still running from one whose request
/// ended without giving it back. A process's own claims are the only ones it can know this of.
static HELD_HERE: LazyLock<Mutex<HashMap<ClaimKey, usize>>> = LazyLock::new(Default::default);

/// One request's hold on a claim in [`HELD_HERE`], let go when dropped. Taken before the
/// claim is written, so no other request of this process ever sees our claim unheld.
struct Held(ClaimKey);

impl Held {
    fn take(key: ClaimKey) -> Held {
        if let Ok(mut held) = HELD_HERE.lock() {
            *held.entry(key.clone()).or_default() += 1;
        }
        Held(key)
    }

    fn by_anyone(key: &ClaimKey) -> bool {
        HELD_HERE.lock().map_or(true, |held| held.contains_key(key))
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Ok(mut held) = HELD_HERE.lock()
            && let Some(count) = held.get_mut(&self.0)
        {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.0);
            }
        }
    }
}

impl Idempotent<'_> {
    /// A key for the provider's own idempotency, derived from ours, so a retry after a crash
    /// (a new payment id, the same merchant key) can never charge or refund twice.
    pub fn provider_key(&self) -> Option<String> {
        self.key.map(|key| {
            entity::signature::sha256_hex(
                format!(
                    "{}:{}:{}:{key}",
                    self.scope.merchant_id,
                    self.scope.mode(),
                    self.operation
                )
                .as_bytes(),
            )
        })
    }

    /// Claims the key before any side effect, or says why not.
    pub async fn begin<T: DeserializeOwned>(
        &self,
        db: &DatabaseConnection,
    ) -> Result<Begun<T>, ServiceError> {
        let Some(key) = self.key else {
            return Ok(Begun::Proceed {
                resumed: None,
                claim: Claim {
                    heartbeat: None,
                    _held: None,
                },
            });
        };
        let now = Utc::now();
        let claim = idempotency_keys::ActiveModel {
            merchant_id: Set(self.scope.merchant_id.clone()),
            livemode: Set(self.scope.livemode),
            key: Set(key.to_string()),
            operation: Set(self.operation.to_string()),
            request_hash: Set(self.fingerprint.clone()),
            response_status: Set(IN_PROGRESS),
            response_body: Set(String::new()),
            created_at: Set(now),
            owner: Set(Some(*runtime::db::PROCESS_KEY)),
        };
        let held = Held::take(self.claim_key(key));
        let inserted = idempotency_keys::Entity::insert(claim)
            .on_conflict(
                OnConflict::columns([
                    idempotency_keys::Column::MerchantId,
                    idempotency_keys::Column::Livemode,
                    idempotency_keys::Column::Key,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(db)
            .await;
        match inserted {
            Ok(1) => {
                return Ok(Begun::Proceed {
                    resumed: None,
                    claim: self.heartbeat(db, key, held),
                });
            }
            Ok(_) | Err(DbErr::RecordNotInserted) => drop(held),
            Err(e) => return Err(e.into()),
        }
        let waiting_until = tokio::time::Instant::now() + WAIT_FOR_FIRST;
        loop {
            let Some(existing) = self.find(db).await? else {
                // Released between our insert and our read: the caller may simply retry.
                return Err(IdempotencyError::InUse.into());
            };
            if existing.operation != self.operation || existing.request_hash != self.fingerprint {
                return Err(IdempotencyError::Reused.into());
            }
            if existing.response_status != IN_PROGRESS {
                let value = serde_json::from_str(&existing.response_body)
                    .map_err(|e| IdempotencyError::Corrupt(e.to_string()))?;
                return Ok(Begun::Replay(value));
            }
            if self.is_abandoned(db, &existing).await? {
                let held = Held::take(self.claim_key(key));
                if self.take_over(db, &existing).await? {
                    let resumed = Some(existing.response_body).filter(|note| !note.is_empty());
                    return Ok(Begun::Proceed {
                        resumed,
                        claim: self.heartbeat(db, key, held),
                    });
                }
            }
            if tokio::time::Instant::now() >= waiting_until {
                return Err(IdempotencyError::InUse.into());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Runs `work` in a transaction and stores its result under the claimed key in that same
    /// transaction. If the work fails, the key is given back.
    pub async fn finish<T, E, W>(&self, db: &DatabaseConnection, work: W) -> Result<T, ServiceError>
    where
        T: Serialize,
        ServiceError: From<E>,
        W: AsyncFnOnce(&DatabaseTransaction) -> Result<T, E>,
    {
        let result = self.execute(db, work).await;
        if result.is_err() {
            self.release(db).await;
        }
        result
    }

    /// `begin`, then `finish` when the key is ours.
    pub async fn run<T, E, W>(
        &self,
        db: &DatabaseConnection,
        work: W,
    ) -> Result<Outcome<T>, ServiceError>
    where
        T: Serialize + DeserializeOwned,
        ServiceError: From<E>,
        W: AsyncFnOnce(&DatabaseTransaction) -> Result<T, E>,
    {
        match self.begin(db).await? {
            Begun::Replay(value) => Ok(Outcome {
                value,
                replayed: true,
            }),
            Begun::Proceed { claim, .. } => {
                let value = self.finish(db, work).await;
                drop(claim);
                Ok(Outcome {
                    value: value?,
                    replayed: false,
                })
            }
        }
    }

    /// Records on the unfinished claim the id of what this request is creating, before any
    /// side effect, so a retry that takes the claim over after a crash creates the same object
    /// (and the provider, keyed by that id, answers with what it already made).
    pub async fn note(&self, db: &DatabaseConnection, id: &str) -> Result<(), DbErr> {
        let Some(key) = self.key else { return Ok(()) };
        idempotency_keys::Entity::update_many()
            .col_expr(idempotency_keys::Column::ResponseBody, Expr::value(id))
            .filter(idempotency_keys::Column::MerchantId.eq(&self.scope.merchant_id))
            .filter(idempotency_keys::Column::Livemode.eq(self.scope.livemode))
            .filter(idempotency_keys::Column::Key.eq(key))
            .filter(idempotency_keys::Column::ResponseStatus.eq(IN_PROGRESS))
            .exec(db)
            .await?;
        Ok(())
    }

    /// Gives an unfinished claim back, so the same request can be retried at once.
    pub async fn release(&self, db: &DatabaseConnection) {
        let Some(key) = self.key else { return };
        let deleted = idempotency_keys::Entity::delete_many()
            .filter(idempotency_keys::Column::MerchantId.eq(&self.scope.merchant_id))
            .filter(idempotency_keys::Column::Livemode.eq(self.scope.livemode))
            .filter(idempotency_keys::Column::Key.eq(key))
            .filter(idempotency_keys::Column::ResponseStatus.eq(IN_PROGRESS))
            .exec(db)
            .await;
        if let Err(e) = deleted {
            tracing::warn!(error = %e, "could not release an idempotency claim; it expires by itself");
        }
    }

    async fn execute<T, E, W>(&self, db: &DatabaseConnection, work: W) -> Result<T, ServiceError>
    where
        T: Serialize,
        ServiceError: From<E>,
        W: AsyncFnOnce(&DatabaseTransaction) -> Result<T, E>,
    {
        self.execute_in(db, work)
            .instrument(self.transaction_span())
            .await
    }

    /// The span of this request's write: part of the request's trace, and the events the
    /// write makes carry it. A write that needs no transaction (one statement, no key) runs
    /// in it too.
    pub fn transaction_span(&self) -> tracing::Span {
        tracing::info_span!("db.transaction", operation = self.operation)
    }

    async fn execute_in<T, E, W>(&self, db: &DatabaseConnection, work: W) -> Result<T, ServiceError>
    where
        T: Serialize,
        ServiceError: From<E>,
        W: AsyncFnOnce(&DatabaseTransaction) -> Result<T, E>,
    {
        let txn = db.begin().await?;
        let value = work(&txn).await?;
        if let Some(key) = self.key {
            let body = serde_json::to_string(&value)
                .map_err(|e| IdempotencyError::Corrupt(e.to_string()))?;
            let stored = idempotency_keys::Entity::update_many()
                .col_expr(idempotency_keys::Column::ResponseStatus, Expr::value(201))
                .col_expr(idempotency_keys::Column::ResponseBody, Expr::value(body))
                .filter(idempotency_keys::Column::MerchantId.eq(&self.scope.merchant_id))
                .filter(idempotency_keys::Column::Livemode.eq(self.scope.livemode))
                .filter(idempotency_keys::Column::Key.eq(key))
                .filter(idempotency_keys::Column::ResponseStatus.eq(IN_PROGRESS))
                .exec(&txn)
                .await?;
            if stored.rows_affected != 1 {
                // Our claim expired and another request took it over: let that one win.
                return Err(IdempotencyError::InUse.into());
            }
        }
        txn.commit().await?;
        Ok(value)
    }

    /// Refreshes our claim every [`HEARTBEAT`] until the returned guard is dropped. Only an
    /// unfinished claim is refreshed; a refresh also makes a concurrent take-over, which
    /// compares the claim's time, fail.
    fn heartbeat(&self, db: &DatabaseConnection, key: &str, held: Held) -> Claim {
        let (db, merchant_id, livemode, key) = (
            db.clone(),
            self.scope.merchant_id.clone(),
            self.scope.livemode,
            key.to_string(),
        );
        let beating = tokio::spawn(async move {
            let mut ticks =
                tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
            loop {
                ticks.tick().await;
                let refreshed = idempotency_keys::Entity::update_many()
                    .col_expr(idempotency_keys::Column::CreatedAt, Expr::value(Utc::now()))
                    .filter(idempotency_keys::Column::MerchantId.eq(&merchant_id))
                    .filter(idempotency_keys::Column::Livemode.eq(livemode))
                    .filter(idempotency_keys::Column::Key.eq(key.as_str()))
                    .filter(idempotency_keys::Column::ResponseStatus.eq(IN_PROGRESS))
                    .exec(&db)
                    .await;
                if let Err(e) = refreshed {
                    tracing::warn!(error = %e, "could not refresh an idempotency claim");
                }
            }
        });
        Claim {
            heartbeat: Some(beating.abort_handle()),
            _held: Some(held),
        }
    }

    fn claim_key(&self, key: &str) -> ClaimKey {
        (
            self.scope.merchant_id.to_string(),
            self.scope.livemode,
            key.to_string(),
        )
    }

    /// Whether nobody works on an unfinished claim any more (see the module's rules).
    async fn is_abandoned(
        &self,
        db: &DatabaseConnection,
        claim: &idempotency_keys::Model,
    ) -> Result<bool, DbErr> {
        let stale = claim.created_at
            < Utc::now() - chrono::Duration::from_std(CLAIM_TTL).unwrap_or_default();
        if stale {
            return Ok(true);
        }
        match claim.owner {
            None => Ok(false),
            Some(owner) if owner == *runtime::db::PROCESS_KEY => {
                Ok(!Held::by_anyone(&self.claim_key(&claim.key)))
            }
            Some(owner) => match db.get_database_backend() {
                DbBackend::Postgres => Ok(!runtime::db::owner_is_alive(db, owner).await?),
                // Embedded mode is one process: a claim of another one is a dead one's.
                _ => Ok(true),
            },
        }
    }

    /// Takes over an abandoned claim for this process; false when another retry got there
    /// first (the claim's time, compared, moved).
    async fn take_over(
        &self,
        db: &DatabaseConnection,
        stale: &idempotency_keys::Model,
    ) -> Result<bool, DbErr> {
        let taken = idempotency_keys::Entity::update_many()
            .col_expr(idempotency_keys::Column::CreatedAt, Expr::value(Utc::now()))
            .col_expr(
                idempotency_keys::Column::Owner,
                Expr::value(*runtime::db::PROCESS_KEY),
            )
            .filter(idempotency_keys::Column::MerchantId.eq(&stale.merchant_id))
            .filter(idempotency_keys::Column::Livemode.eq(stale.livemode))
            .filter(idempotency_keys::Column::Key.eq(stale.key.as_str()))
            .filter(idempotency_keys::Column::ResponseStatus.eq(IN_PROGRESS))
            .filter(idempotency_keys::Column::CreatedAt.eq(stale.created_at))
            .exec(db)
            .await?;
        Ok(taken.rows_affected == 1)
    }

    async fn find(
        &self,
        db: &DatabaseConnection,
    ) -> Result<Option<idempotency_keys::Model>, DbErr> {
        match self.key {
            None => Ok(None),
            Some(key) => {
                idempotency_keys::Entity::find_by_id((
                    self.scope.merchant_id.clone(),
                    self.scope.livemode,
                    key.to_string(),
                ))
                .one(db)
                .await
            }
        }
    }
}

/// Whether the merchant already used `key` in this mode (for any operation): a retry whose
/// answer is kept.
pub async fn exists(db: &DatabaseConnection, scope: &Scope, key: &str) -> Result<bool, DbErr> {
    Ok(idempotency_keys::Entity::find()
        .filter(idempotency_keys::Column::MerchantId.eq(&scope.merchant_id))
        .filter(idempotency_keys::Column::Livemode.eq(scope.livemode))
        .filter(idempotency_keys::Column::Key.eq(key))
        .one(db)
        .await?
        .is_some())
}
