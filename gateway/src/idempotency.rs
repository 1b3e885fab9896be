//! `Idempotency-Key` for every POST that creates something. The first response is stored in
//! the same transaction as the work, so a replay can never describe work that rolled back.
//! Same key and request → that response again; same key, other request (or another
//! operation) → 409; a concurrent duplicate waits on the first one's commit (the key's
//! primary key) and then replays it.

use chrono::Utc;
use entity::idempotency_keys;
use entity::ids::MerchantId;
use sea_orm::{
    ActiveValue::Set, DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait, SqlErr,
    TransactionTrait,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{IdempotencyError, ServiceError};

/// One idempotent request: who, which key, what operation, and a fingerprint of the request.
pub struct Idempotent<'a> {
    pub merchant_id: &'a MerchantId,
    pub key: Option<&'a str>,
    pub operation: &'static str,
    pub fingerprint: String,
}

/// A response and whether it was replayed.
pub struct Outcome<T> {
    pub value: T,
    pub replayed: bool,
}

impl Idempotent<'_> {
    /// Runs `work` in a transaction, storing its result under the key (when there is one).
    pub async fn run<T, W>(
        &self,
        db: &DatabaseConnection,
        work: W,
    ) -> Result<Outcome<T>, ServiceError>
    where
        T: Serialize + DeserializeOwned,
        W: AsyncFnOnce(&DatabaseTransaction) -> Result<T, DbErr>,
    {
        if let Some(done) = self.find(db).await? {
            return Ok(self.replay(done)?);
        }
        let result = self.execute(db, work).await;
        match result {
            Ok(value) => Ok(Outcome {
                value,
                replayed: false,
            }),
            Err(e)
                if self.key.is_some()
                    && matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) =>
            {
                match self.find(db).await? {
                    Some(done) => Ok(self.replay(done)?),
                    None => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The stored outcome, when this key was already used (a replay, or a 409 for another request).
    pub async fn done<T: DeserializeOwned>(
        &self,
        db: &DatabaseConnection,
    ) -> Result<Option<Outcome<T>>, IdempotencyError> {
        match self.find(db).await? {
            Some(done) => self.replay(done).map(Some),
            None => Ok(None),
        }
    }

    async fn execute<T, W>(&self, db: &DatabaseConnection, work: W) -> Result<T, DbErr>
    where
        T: Serialize,
        W: AsyncFnOnce(&DatabaseTransaction) -> Result<T, DbErr>,
    {
        let txn = db.begin().await?;
        let value = work(&txn).await?;
        if let Some(key) = self.key {
            idempotency_keys::Entity::insert(idempotency_keys::ActiveModel {
                merchant_id: Set(self.merchant_id.clone()),
                key: Set(key.to_string()),
                operation: Set(self.operation.to_string()),
                request_hash: Set(self.fingerprint.clone()),
                response_status: Set(201),
                response_body: Set(serde_json::to_string(&value).unwrap_or_default()),
                created_at: Set(Utc::now()),
            })
            .exec_without_returning(&txn)
            .await?;
        }
        txn.commit().await?;
        Ok(value)
    }

    async fn find(
        &self,
        db: &DatabaseConnection,
    ) -> Result<Option<idempotency_keys::Model>, DbErr> {
        match self.key {
            None => Ok(None),
            Some(key) => {
                idempotency_keys::Entity::find_by_id((self.merchant_id.clone(), key.to_string()))
                    .one(db)
                    .await
            }
        }
    }

    fn replay<T: DeserializeOwned>(
        &self,
        done: idempotency_keys::Model,
    ) -> Result<Outcome<T>, IdempotencyError> {
        if done.operation != self.operation || done.request_hash != self.fingerprint {
            return Err(IdempotencyError::Reused);
        }
        let value = serde_json::from_str(&done.response_body)
            .map_err(|e| IdempotencyError::Corrupt(e.to_string()))?;
        Ok(Outcome {
            value,
            replayed: true,
        })
    }
}
